with

source as (

    select * from {{ source('shop', 'orders') }}

),

renamed as (

    select
        file_row_number as source_row_number,
        try_cast(order_id as bigint) as order_id,
        try_cast(member_id as bigint) as member_id,
        try_cast(ordered_at as timestamp) as ordered_at,
        upper({{ clean_text('currency') }}) as currency,
        try_cast(amount as double) as amount,
        lower({{ clean_text('status') }}) as status

    from source

)

select * from renamed
