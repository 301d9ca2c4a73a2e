{{ config(materialized='table') }}
{%- set rfm_window_days = optional_var('rfm_window_days') %}
-- One row per valid member (prospects included, with zero counts) summarising their clean paid
-- orders on or before as_of_date. "Trailing N days" = date_diff('day', order_date, as_of_date) < N.
-- Order days are distinct calendar days (UTC) with at least one paid order.
with

members as (

    select member_id from {{ ref('int_members_cleaned') }}

),

paid_orders as (

    select
        member_id,
        ordered_at,
        order_date,
        amount_base,
        date_diff('day', order_date, {{ as_of_date() }}) as days_ago

    from {{ ref('int_orders_validated') }}
    where quarantine_reason is null and is_paid

),

order_days as (

    select
        member_id,
        order_date,
        min(days_ago) as days_ago,
        min(ordered_at) as first_ordered_at,
        max(ordered_at) as last_ordered_at,
        count(*) as paid_orders,
        sum(amount_base) as amount_base

    from paid_orders
    group by member_id, order_date

),

aggregated as (

    select
        member_id,
        min(first_ordered_at) as first_order_at,
        max(last_ordered_at) as last_order_at,
        min(order_date, 2) as first_two_order_dates,
        max(order_date, 2) as last_two_order_dates,
        count(*) as paid_order_days,
        sum(paid_orders) as paid_orders,
        sum(amount_base) as paid_amount_base,
        sum(paid_orders) filter (where days_ago < {{ var('lifecycle_loyal_window_days') }})
            as paid_orders_loyal_window,
        sum(amount_base) filter (where days_ago < 30) as spend_30d,
        sum(amount_base) filter (where days_ago < 365) as spend_365d,
        {%- if rfm_window_days is none %}
        sum(paid_orders) as rfm_frequency,
        sum(amount_base) as rfm_monetary
        {%- else %}
        sum(paid_orders) filter (where days_ago < {{ rfm_window_days }}) as rfm_frequency,
        sum(amount_base) filter (where days_ago < {{ rfm_window_days }}) as rfm_monetary
        {%- endif %}

    from order_days
    group by member_id

),

final as (

    select
        members.member_id,
        aggregated.first_order_at,
        aggregated.last_order_at,
        aggregated.first_two_order_dates[1] as first_order_date,
        aggregated.first_two_order_dates[2] as second_order_date,
        aggregated.last_two_order_dates[2] as previous_order_date,
        aggregated.last_two_order_dates[1] as last_order_date,
        date_diff('day', aggregated.last_two_order_dates[1], {{ as_of_date() }}) as recency_days,
        date_diff('day', aggregated.last_two_order_dates[2], aggregated.last_two_order_dates[1])
            as last_gap_days,
        coalesce(aggregated.paid_order_days, 0)::integer as paid_order_days,
        coalesce(aggregated.paid_orders, 0)::integer as paid_orders,
        coalesce(aggregated.paid_amount_base, 0)::decimal(18, 2) as paid_amount_base,
        coalesce(aggregated.paid_orders_loyal_window, 0)::integer as paid_orders_loyal_window,
        coalesce(aggregated.spend_30d, 0)::decimal(18, 2) as spend_30d,
        coalesce(aggregated.spend_365d, 0)::decimal(18, 2) as spend_365d,
        coalesce(aggregated.rfm_frequency, 0)::integer as rfm_frequency,
        coalesce(aggregated.rfm_monetary, 0)::decimal(18, 2) as rfm_monetary

    from members
    left join aggregated
        on members.member_id = aggregated.member_id

)

select * from final
