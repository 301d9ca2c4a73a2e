-- One row per sign-up month (months up to the as_of month): members who signed up in the month
-- and how many were retained. Retained at N days = at least one clean event or clean paid order
-- on days 1..N after the sign-up day (1 <= date_diff('day', sign-up day, activity day) <= N).
-- Members without signed_up_at are left out. A cohort whose window is not yet over on
-- as_of_date is flagged incomplete.
with

members as (

    select
        member_id,
        cast(signed_up_at as date) as signed_up_on

    from {{ ref('int_members_cleaned') }}
    where signed_up_at is not null

),

activity as (

    select member_id, order_date as active_on
    from {{ ref('int_orders_validated') }}
    where quarantine_reason is null and is_paid

    union all

    select member_id, occurred_on as active_on
    from {{ ref('int_events_validated') }}
    where quarantine_reason is null

),

first_returns as (

    select
        members.member_id,
        min(date_diff('day', members.signed_up_on, activity.active_on)) as first_return_day

    from members
    inner join activity
        on members.member_id = activity.member_id
        and activity.active_on > members.signed_up_on
        and activity.active_on <= members.signed_up_on + 30
    group by members.member_id

),

cohorts as (

    select
        cast(date_trunc('month', members.signed_up_on) as date) as signup_month,
        count(*) as new_members,
        count(*) filter (where first_returns.first_return_day <= 7) as retained_7d,
        count(*) filter (where first_returns.first_return_day <= 30) as retained_30d

    from members
    left join first_returns
        on members.member_id = first_returns.member_id
    group by 1

)

select
    signup_month,
    new_members,
    retained_7d,
    retained_30d,
    round(retained_7d / new_members, 4) as retention_rate_7d,
    round(retained_30d / new_members, 4) as retention_rate_30d,
    last_day(signup_month) + 7 <= {{ as_of_date() }} as is_complete_7d,
    last_day(signup_month) + 30 <= {{ as_of_date() }} as is_complete_30d,
    {{ as_of_date() }} as as_of_date

from cohorts
