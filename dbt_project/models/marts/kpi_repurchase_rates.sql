-- One row per first-purchase month (months up to the as_of month): members whose first clean paid
-- order fell in the month, and how many paid again on a later day within 30 / 90 days of it
-- (1 <= date_diff('day', first order day, next order day) <= N). A cohort whose window is not yet
-- over on as_of_date is flagged incomplete: its rate can still go up.
with

buyers as (

    select
        member_id,
        first_order_date,
        second_order_date,
        date_diff('day', first_order_date, second_order_date) as days_to_repurchase

    from {{ ref('int_members_orders_aggregated') }}
    where paid_orders > 0

),

cohorts as (

    select
        cast(date_trunc('month', first_order_date) as date) as first_purchase_month,
        count(*) as members,
        count(*) filter (where days_to_repurchase <= 30) as repurchased_30d,
        count(*) filter (where days_to_repurchase <= 90) as repurchased_90d

    from buyers
    group by 1

)

select
    first_purchase_month,
    members,
    repurchased_30d,
    repurchased_90d,
    round(repurchased_30d / members, 4) as repurchase_rate_30d,
    round(repurchased_90d / members, 4) as repurchase_rate_90d,
    last_day(first_purchase_month) + 30 <= {{ as_of_date() }} as is_complete_30d,
    last_day(first_purchase_month) + 90 <= {{ as_of_date() }} as is_complete_90d,
    {{ as_of_date() }} as as_of_date

from cohorts
