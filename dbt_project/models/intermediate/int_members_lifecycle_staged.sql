-- One row per valid member with its lifecycle stage: the first rule that matches wins.
-- "within N days" = recency_days <= N. All numbers are vars (dbt_project.yml).
with

members as (

    select * from {{ ref('int_members_orders_aggregated') }}

),

staged as (

    select
        member_id,
        paid_orders,
        paid_orders_loyal_window,
        recency_days,
        last_gap_days,
        case
            when paid_orders = 0
                then 'prospect'
            when recency_days <= {{ var('lifecycle_reactivated_within_days') }}
                and last_gap_days > {{ var('lifecycle_reactivated_gap_days') }}
                then 'reactivated'
            when paid_orders = 1 and recency_days <= {{ var('lifecycle_new_days') }}
                then 'new'
            when paid_orders_loyal_window >= {{ var('lifecycle_loyal_min_orders') }}
                and recency_days <= {{ var('lifecycle_loyal_recency_days') }}
                then 'loyal'
            when recency_days <= {{ var('lifecycle_active_days') }}
                then 'active'
            when recency_days <= {{ var('lifecycle_at_risk_days') }}
                then 'at_risk'
            when recency_days <= {{ var('lifecycle_dormant_days') }}
                then 'dormant'
            else 'churned'
        end as lifecycle_stage

    from members

)

select * from staged
