-- One row per campaign x run x variant, the holdout as its own row (variant 'holdout'), with lift of
-- each treated variant over the holdout of the same run (docs/measurement.md). A member in several
-- steps of one run counts once: converted if any of their windows converted, revenue of their largest.
with

units as (

    select * from {{ ref('int_campaign_members_attributed') }}

),

runs as (

    select campaign_run_id, run_id from {{ ref('stg_ledger__campaign_runs') }}

),

run_members as (

    select
        campaign,
        campaign_run_id,
        variant,
        member_id,
        bool_or(is_holdout) as is_holdout,
        min(logical_date) as logical_date,
        sum(messages_sent) as messages_sent,
        sum(messages_delivered) as messages_delivered,
        sum(messages_bounced) as messages_bounced,
        sum(messages_opened) as messages_opened,
        sum(messages_clicked) as messages_clicked,
        sum(messages_unsubscribed) as messages_unsubscribed,
        bool_or(is_converted) as is_converted,
        max(revenue_base) as revenue_base,
        max(attribution_window_days) as attribution_window_days,
        bool_and(is_attribution_complete) as is_attribution_complete

    from units
    group by campaign, campaign_run_id, variant, member_id

),

arms as (

    select
        campaign,
        campaign_run_id,
        variant,
        bool_or(is_holdout) as is_holdout,
        min(logical_date) as logical_date,
        {{ arm_measures() }}

    from run_members
    group by campaign, campaign_run_id, variant

),

holdouts as (

    select campaign_run_id, audience, converted
    from arms
    where is_holdout

),

final as (

    select
        arms.campaign_run_id || ':' || arms.variant as campaign_performance_id,
        arms.campaign,
        arms.campaign_run_id,
        runs.run_id,
        arms.logical_date,
        arms.variant,
        arms.is_holdout,
        {{ arm_vs_holdout_columns('arms', 'holdouts') }},
        {{ as_of_date() }} as as_of_date

    from arms
    left join holdouts
        on arms.campaign_run_id = holdouts.campaign_run_id
        and not arms.is_holdout
    left join runs
        on arms.campaign_run_id = runs.campaign_run_id

)

select * from final
