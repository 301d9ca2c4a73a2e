with

source as (

    select * from {{ source('shop', 'products') }}

),

renamed as (

    select
        file_row_number as source_row_number,
        try_cast(product_id as bigint) as product_id,
        {{ clean_text('name') }} as product_name,
        {{ clean_text('category') }} as category,
        try_cast(price as double) as price,
        upper({{ clean_text('currency') }}) as currency,
        -- a consumption period that is not a positive whole number of days is no consumption period
        case
            when try_cast(consumption_days as integer) > 0 then try_cast(consumption_days as integer)
        end as consumption_days

    from source

)

select * from renamed
