with

source as (

    select * from {{ source('shop', 'fx_rates') }}

),

renamed as (

    select
        file_row_number as source_row_number,
        upper({{ clean_text('currency') }}) as currency,
        try_cast(rate_to_base as double) as rate_to_base

    from source

)

select * from renamed
