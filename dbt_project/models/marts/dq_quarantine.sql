-- One row per landing row kept out of the marts, with the first reason that applies. record_id is
-- the row's id as text (order_id-product_id for order lines; null when the id itself is missing);
-- source_row_number is the row's position in its parquet file (from 0), so every row can be found.
with

members as (

    select
        'members' as entity,
        cast(member_id as varchar) as record_id,
        source_row_number,
        quarantine_reason as reason

    from {{ ref('int_members_validated') }}
    where quarantine_reason is not null

),

orders as (

    select
        'orders' as entity,
        cast(order_id as varchar) as record_id,
        source_row_number,
        quarantine_reason as reason

    from {{ ref('int_orders_validated') }}
    where quarantine_reason is not null

),

order_items as (

    select
        'order_items' as entity,
        cast(order_id as varchar) || '-' || cast(product_id as varchar) as record_id,
        source_row_number,
        quarantine_reason as reason

    from {{ ref('int_order_items_validated') }}
    where quarantine_reason is not null

),

products as (

    select
        'products' as entity,
        cast(product_id as varchar) as record_id,
        source_row_number,
        quarantine_reason as reason

    from {{ ref('int_products_validated') }}
    where quarantine_reason is not null

),

events as (

    select
        'events' as entity,
        cast(event_id as varchar) as record_id,
        source_row_number,
        quarantine_reason as reason

    from {{ ref('int_events_validated') }}
    where quarantine_reason is not null

),

fx_rates as (

    select
        'fx_rates' as entity,
        currency as record_id,
        source_row_number,
        quarantine_reason as reason

    from {{ ref('int_fx_rates_validated') }}
    where quarantine_reason is not null

),

unioned as (

    select * from members
    union all
    select * from orders
    union all
    select * from order_items
    union all
    select * from products
    union all
    select * from events
    union all
    select * from fx_rates

)

select
    entity || ':' || source_row_number as quarantine_id,
    entity,
    record_id,
    source_row_number,
    reason,
    {{ as_of_date() }} as as_of_date

from unioned
