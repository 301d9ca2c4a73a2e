-- One row per member x consumable product the member ever bought in a clean paid order on or
-- before as_of_date. The quantity bought on the last purchase day (summed over that day's orders)
-- lasts quantity * consumption_days days: runs_out_on = last_purchase_date + quantity * consumption_days.
-- One aggregation pass over the order lines; only the rare pairs bought more than once on their
-- last purchase day need a second look to add up that day's quantities.
with

consumables as (

    select
        product_id,
        product_name,
        category,
        consumption_days

    from {{ ref('int_products_validated') }}
    where quarantine_reason is null
        and consumption_days is not null

),

-- materialized: read once by the aggregation, again (for the rare same-day pairs) by the correction
purchased_lines as materialized (

    select
        member_id,
        product_id,
        order_date,
        quantity

    from {{ ref('int_order_items_validated') }}
    where quarantine_reason is null
        and order_quarantine_reason is null
        and is_paid
        and product_id in (select product_id from consumables)

),

pairs as (

    select
        member_id,
        product_id,
        count(*) as purchases,
        max(order_date, 2) as last_two_purchase_dates,
        arg_max(quantity, order_date) as last_line_quantity

    from purchased_lines
    group by member_id, product_id

),

same_day_quantities as (

    select
        purchased_lines.member_id,
        purchased_lines.product_id,
        sum(purchased_lines.quantity) as quantity

    from purchased_lines
    inner join pairs
        on purchased_lines.member_id = pairs.member_id
        and purchased_lines.product_id = pairs.product_id
        and purchased_lines.order_date = pairs.last_two_purchase_dates[1]
    where pairs.last_two_purchase_dates[1] = pairs.last_two_purchase_dates[2]
    group by purchased_lines.member_id, purchased_lines.product_id

),

last_purchases as (

    select
        pairs.member_id,
        pairs.product_id,
        pairs.purchases,
        pairs.last_two_purchase_dates[1] as last_purchase_date,
        coalesce(same_day_quantities.quantity, pairs.last_line_quantity) as quantity

    from pairs
    left join same_day_quantities
        on pairs.member_id = same_day_quantities.member_id
        and pairs.product_id = same_day_quantities.product_id

),

final as (

    select
        last_purchases.member_id,
        last_purchases.product_id,
        consumables.product_name,
        consumables.category,
        last_purchases.purchases::integer as purchases,
        last_purchases.last_purchase_date,
        last_purchases.quantity::integer as quantity,
        consumables.consumption_days,
        cast(
            last_purchases.last_purchase_date
            + to_days(cast(last_purchases.quantity * consumables.consumption_days as integer))
            as date
        ) as runs_out_on,
        {{ as_of_date() }} as as_of_date

    from last_purchases
    inner join consumables
        on last_purchases.product_id = consumables.product_id

)

select
    *,
    date_diff('day', as_of_date, runs_out_on) as days_until_runout,
    runs_out_on >= as_of_date as is_upcoming

from final
