{{ config(materialized='table') }}
{%- set rfm_window_days = optional_var('rfm_window_days') %}
-- One row per valid member (prospects included, with zero counts) summarising their clean paid
-- orders on or before as_of_date. "Trailing N days" = date_diff('day', order_date, as_of_date) < N.
-- Order days are calendar days (UTC): second_order_date and previous_order_date are the next /
-- previous *distinct* day with a paid order. One aggregation pass over the orders; only members
-- with two orders on their first or last order day need a second look to find those days.
with

members as (

    select member_id from {{ ref('int_members_cleaned') }}

),

-- not materialized: the second reader (neighbouring_days) only needs the rare repeated-day members
paid_orders as not materialized (

    select
        member_id,
        ordered_at,
        order_date,
        amount_base,
        date_diff('day', order_date, {{ as_of_date() }}) as days_ago

    from {{ ref('int_orders_validated') }}
    where quarantine_reason is null and is_paid

),

aggregated as (

    select
        member_id,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at,
        min(order_date, 2) as first_two_order_dates,
        max(order_date, 2) as last_two_order_dates,
        count(*) as paid_orders,
        sum(amount_base) as paid_amount_base,
        count(*) filter (where days_ago < {{ var('lifecycle_loyal_window_days') }})
            as paid_orders_loyal_window,
        sum(amount_base) filter (where days_ago < 30) as spend_30d,
        sum(amount_base) filter (where days_ago < 365) as spend_365d,
        {%- if rfm_window_days is none %}
        count(*) as rfm_frequency,
        sum(amount_base) as rfm_monetary
        {%- else %}
        count(*) filter (where days_ago < {{ rfm_window_days }}) as rfm_frequency,
        sum(amount_base) filter (where days_ago < {{ rfm_window_days }}) as rfm_monetary
        {%- endif %}

    from paid_orders
    group by member_id

),

repeated_day_members as (

    select
        member_id,
        first_two_order_dates[1] as first_order_date,
        last_two_order_dates[1] as last_order_date

    from aggregated
    where first_two_order_dates[1] = first_two_order_dates[2]
        or last_two_order_dates[1] = last_two_order_dates[2]

),

neighbouring_days as (

    select
        repeated_day_members.member_id,
        min(paid_orders.order_date) filter (where paid_orders.order_date > repeated_day_members.first_order_date)
            as second_order_date,
        max(paid_orders.order_date) filter (where paid_orders.order_date < repeated_day_members.last_order_date)
            as previous_order_date

    from repeated_day_members
    inner join paid_orders
        on repeated_day_members.member_id = paid_orders.member_id
    group by repeated_day_members.member_id

),

order_days as (

    select
        aggregated.*,
        aggregated.first_two_order_dates[1] as first_order_date,
        case
            when aggregated.first_two_order_dates[1] = aggregated.first_two_order_dates[2]
                then neighbouring_days.second_order_date
            else aggregated.first_two_order_dates[2]
        end as second_order_date,
        case
            when aggregated.last_two_order_dates[1] = aggregated.last_two_order_dates[2]
                then neighbouring_days.previous_order_date
            else aggregated.last_two_order_dates[2]
        end as previous_order_date,
        aggregated.last_two_order_dates[1] as last_order_date

    from aggregated
    left join neighbouring_days
        on aggregated.member_id = neighbouring_days.member_id

),

final as (

    select
        members.member_id,
        order_days.first_order_at,
        order_days.last_order_at,
        order_days.first_order_date,
        order_days.second_order_date,
        order_days.previous_order_date,
        order_days.last_order_date,
        date_diff('day', order_days.last_order_date, {{ as_of_date() }}) as recency_days,
        date_diff('day', order_days.previous_order_date, order_days.last_order_date) as last_gap_days,
        coalesce(order_days.paid_orders, 0)::integer as paid_orders,
        coalesce(order_days.paid_amount_base, 0)::decimal(18, 2) as paid_amount_base,
        coalesce(order_days.paid_orders_loyal_window, 0)::integer as paid_orders_loyal_window,
        coalesce(order_days.spend_30d, 0)::decimal(18, 2) as spend_30d,
        coalesce(order_days.spend_365d, 0)::decimal(18, 2) as spend_365d,
        coalesce(order_days.rfm_frequency, 0)::integer as rfm_frequency,
        coalesce(order_days.rfm_monetary, 0)::decimal(18, 2) as rfm_monetary

    from members
    left join order_days
        on members.member_id = order_days.member_id

)

select * from final
