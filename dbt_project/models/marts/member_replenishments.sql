-- One row per member x consumable product the member ever bought in a clean paid order on or
-- before as_of_date. The last purchase day's quantity (summed over that day's orders) lasts
-- quantity * consumption_days days: runs_out_on = last_purchase_date + quantity * consumption_days.
with

purchased_lines as (

    select
        member_id,
        product_id,
        order_date,
        ordered_at,
        quantity,
        consumption_days

    from {{ ref('int_order_items_validated') }}
    where quarantine_reason is null
        and order_quarantine_reason is null
        and is_paid
        and consumption_days is not null

),

purchase_days as (

    select
        member_id,
        product_id,
        order_date,
        max(ordered_at) as last_ordered_at,
        sum(quantity) as quantity,
        any_value(consumption_days) as consumption_days

    from purchased_lines
    group by member_id, product_id, order_date

),

last_purchases as (

    select
        member_id,
        product_id,
        count(*) as purchase_days,
        max(order_date) as last_purchase_date,
        arg_max(last_ordered_at, order_date) as last_purchased_at,
        arg_max(quantity, order_date) as quantity,
        any_value(consumption_days) as consumption_days

    from purchase_days
    group by member_id, product_id

),

products as (

    select product_id, product_name, category
    from {{ ref('int_products_validated') }}
    where quarantine_reason is null

),

final as (

    select
        last_purchases.member_id,
        last_purchases.product_id,
        products.product_name,
        products.category,
        last_purchases.purchase_days::integer as purchase_days,
        last_purchases.last_purchased_at,
        last_purchases.last_purchase_date,
        last_purchases.quantity::integer as quantity,
        last_purchases.consumption_days,
        cast(
            last_purchases.last_purchase_date
            + to_days(cast(last_purchases.quantity * last_purchases.consumption_days as integer))
            as date
        ) as runs_out_on,
        {{ as_of_date() }} as as_of_date

    from last_purchases
    inner join products
        on last_purchases.product_id = products.product_id

)

select
    *,
    date_diff('day', as_of_date, runs_out_on) as days_until_runout,
    runs_out_on >= as_of_date as is_upcoming

from final
