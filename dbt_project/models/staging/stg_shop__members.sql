with

source as (

    select * from {{ source('shop', 'members') }}

),

renamed as (

    select
        file_row_number as source_row_number,
        try_cast(member_id as bigint) as member_id,
        {{ clean_text('email') }} as email_raw,
        {{ clean_email(clean_text('email')) }} as email,
        {{ clean_text('phone') }} as phone_raw,
        {{ clean_text('first_name') }} as first_name,
        {{ clean_text('last_name') }} as last_name,
        case
            when lower({{ clean_text('gender') }}) in ('female', 'male', 'other', 'unknown')
                then lower({{ clean_text('gender') }})
            when lower({{ clean_text('gender') }}) in ('f', 'woman') then 'female'
            when lower({{ clean_text('gender') }}) in ('m', 'man') then 'male'
            else 'unknown'
        end as gender,
        try_cast(birth_date as date) as birth_date,
        upper({{ clean_text('country') }}) as country,
        {{ clean_text('locale') }} as locale,
        {{ clean_text('timezone') }} as timezone,
        upper({{ clean_text('currency') }}) as currency,
        try_cast(signed_up_at as timestamp) as signed_up_at,
        coalesce(try_cast(email_opt_in as boolean), false) as has_email_opt_in,
        coalesce(try_cast(sms_opt_in as boolean), false) as has_sms_opt_in

    from source

)

select * from renamed
