{%- set churn_after_days = var('lifecycle_dormant_days') | int + 1 %}
-- One row per month from the first month with a clean paid order up to the as_of month.
-- Churn rule (as lifecycle_stage): a member is churned on day d when more than
-- lifecycle_dormant_days days have passed since their last paid order on or before d, i.e. from
-- churned_on = last order day + lifecycle_dormant_days + 1 unless they order again before.
--   members_active_at_start = members with a paid order before the month who are not churned at
--                             the end of the day before the month starts
--   members_churned         = members whose churned_on falls in the month (up to as_of_date)
-- Every churned member was active at the start of its month, so churn_rate is in [0, 1].
with

-- paid orders, not de-duplicated per day: a same-day repeat has a 0-day gap, which never starts or
-- ends a spell, so exactly one row per spell start / churn passes the filters below
order_days as (

    select
        member_id,
        order_date

    from {{ ref('int_orders_validated') }}
    where quarantine_reason is null and is_paid

),

sequenced as (

    select
        member_id,
        order_date,
        lag(order_date) over by_member as previous_order_date,
        lead(order_date) over by_member as next_order_date

    from order_days
    window by_member as (partition by member_id order by order_date)

),

-- a spell of activity starts at a first order or at the first order after a churn ...
spell_starts as (

    select order_date as started_on
    from sequenced
    where previous_order_date is null
        or order_date > previous_order_date + {{ churn_after_days }}

),

-- ... and ends when no order follows within lifecycle_dormant_days (possibly after as_of_date)
churns as (

    select order_date + {{ churn_after_days }} as churned_on
    from sequenced
    where next_order_date is null
        or next_order_date > order_date + {{ churn_after_days }}

),

months as (

    select cast(month as date) as month
    from range(
        (select date_trunc('month', min(order_date)) from order_days),
        date_trunc('month', {{ as_of_date() }}) + interval 1 month,
        interval 1 month
    ) as months(month)

),

-- a spell counts from the first month start after it began to the month start after it ends
starts_by_month as (

    select
        cast(date_trunc('month', started_on) + interval 1 month as date) as month,
        count(*) as spells

    from spell_starts
    group by 1

),

ends_by_month as (

    select
        cast(date_trunc('month', churned_on) + interval 1 month as date) as month,
        count(*) as spells

    from churns
    group by 1

),

churned_by_month as (

    select
        cast(date_trunc('month', churned_on) as date) as month,
        count(*) as members_churned

    from churns
    where churned_on <= {{ as_of_date() }}
    group by 1

),

active as (

    select
        months.month,
        sum(coalesce(starts_by_month.spells, 0)) over running
        - sum(coalesce(ends_by_month.spells, 0)) over running as members_active_at_start

    from months
    left join starts_by_month
        on months.month = starts_by_month.month
    left join ends_by_month
        on months.month = ends_by_month.month
    window running as (order by months.month rows between unbounded preceding and current row)

)

select
    active.month,
    active.members_active_at_start::bigint as members_active_at_start,
    coalesce(churned_by_month.members_churned, 0) as members_churned,
    round(coalesce(churned_by_month.members_churned, 0) / nullif(active.members_active_at_start, 0), 4)
        as churn_rate,
    last_day(active.month) <= {{ as_of_date() }} as is_complete_month,
    {{ as_of_date() }} as as_of_date

from active
left join churned_by_month
    on active.month = churned_by_month.month
