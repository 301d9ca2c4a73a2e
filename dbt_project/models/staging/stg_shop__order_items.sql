with

source as (

    select * from {{ source('shop', 'order_items') }}

),

renamed as (

    select
        file_row_number as source_row_number,
        try_cast(order_id as bigint) as order_id,
        try_cast(product_id as bigint) as product_id,
        try_cast(quantity as integer) as quantity,
        try_cast(unit_price as double) as unit_price

    from source

)

select * from renamed
