-- One row per staged order line with quarantine_reason (null = a clean line) and the facts of its
-- order and product. A clean line of a quarantined order is not listed itself (its order is);
-- downstream models keep lines whose order_quarantine_reason is null.
with

order_items as (

    select * from {{ ref('stg_shop__order_items') }}

),

orders as (

    select order_id, member_id, ordered_at, order_date, is_paid, quarantine_reason
    from {{ ref('int_orders_validated') }}
    where quarantine_reason is distinct from 'duplicate_order_id'

),

products as (

    select product_id, consumption_days
    from {{ ref('int_products_validated') }}
    where quarantine_reason is null

),

final as (

    select
        order_items.source_row_number,
        order_items.order_id,
        order_items.product_id,
        order_items.quantity,
        order_items.unit_price,
        orders.member_id,
        orders.ordered_at,
        orders.order_date,
        orders.is_paid,
        orders.quarantine_reason as order_quarantine_reason,
        products.consumption_days,
        case
            when order_items.order_id is null then 'missing_order_id'
            when orders.order_id is null then 'unknown_order'
            when order_items.product_id is null then 'missing_product_id'
            when products.product_id is null then 'unknown_product'
            when order_items.quantity is null or order_items.quantity <= 0 then 'invalid_quantity'
            when order_items.unit_price < 0 then 'negative_unit_price'
        end as quarantine_reason

    from order_items
    left join orders
        on order_items.order_id = orders.order_id
    left join products
        on order_items.product_id = products.product_id

)

select * from final
