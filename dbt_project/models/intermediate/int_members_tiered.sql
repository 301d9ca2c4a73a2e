-- One row per valid member with its tier from trailing paid spend in the base currency
-- (trailing N days = date_diff('day', order_date, as_of_date) < N).
with

members as (

    select * from {{ ref('int_members_orders_aggregated') }}

),

tiered as (

    select
        member_id,
        spend_30d,
        spend_365d,
        case
            when spend_365d >= {{ var('tier_super_spend_365d') }}
                then 'super'
            when spend_30d >= {{ var('tier_senior_spend_30d') }}
                or spend_365d >= {{ var('tier_senior_spend_365d') }}
                then 'senior'
            else 'ordinary'
        end as member_tier

    from members

)

select * from tiered
