with

source as (

    select * from {{ source('shop', 'events') }}

),

renamed as (

    select
        file_row_number as source_row_number,
        try_cast(event_id as bigint) as event_id,
        try_cast(member_id as bigint) as member_id,
        lower({{ clean_text('event_type') }}) as event_type,
        try_cast(product_id as bigint) as product_id,
        try_cast(occurred_at as timestamp) as occurred_at

    from source

)

select * from renamed
