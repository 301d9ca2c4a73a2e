{{ config(materialized='table') }}
-- A table, not a view: campaigns read it at send time (retain.campaigns.products: product cards,
-- offer currency conversion), and a view would show whatever file sits in the landing folder now
-- instead of what the last build that passed the data-quality guards accepted.
-- One row per staged product record with quarantine_reason (null for the one row kept per
-- product_id: the first in file order).
with

products as (

    select * from {{ ref('stg_shop__products') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by product_id
            order by source_row_number
        ) as duplicate_rank

    from products

)

select
    * exclude (duplicate_rank),
    case
        when product_id is null then 'missing_product_id'
        when duplicate_rank > 1 then 'duplicate_product_id'
    end as quarantine_reason

from ranked
