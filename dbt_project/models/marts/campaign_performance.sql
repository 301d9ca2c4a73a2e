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
        sum(messages_sent) as sent,
        sum(messages_delivered) as delivered,
        sum(messages_bounced) as bounced,
        sum(messages_opened) as opened,
        sum(messages_clicked) as clicked,
        sum(messages_unsubscribed) as unsubscribed,
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
        count(*) as audience,
        sum(sent)::bigint as sent,
        sum(delivered)::bigint as delivered,
        sum(bounced)::bigint as bounced,
        sum(opened)::bigint as opened,
        sum(clicked)::bigint as clicked,
        sum(unsubscribed)::bigint as unsubscribed,
        count(*) filter (where is_converted) as converted,
        sum(revenue_base)::decimal(18, 2) as revenue_base,
        max(attribution_window_days) as attribution_window_days,
        bool_and(is_attribution_complete) as is_attribution_complete

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
        arms.audience,
        arms.sent,
        arms.delivered,
        arms.bounced,
        arms.opened,
        arms.clicked,
        arms.unsubscribed,
        arms.converted,
        arms.revenue_base,
        round(arms.converted / arms.audience, 6) as conversion_rate,
        holdouts.audience as holdout_audience,
        holdouts.converted as holdout_converted,
        round(holdouts.converted / holdouts.audience, 6) as holdout_conversion_rate,
        {{ lift_columns('arms.converted', 'arms.audience', 'holdouts.converted', 'holdouts.audience') }},
        arms.attribution_window_days,
        arms.is_attribution_complete,
        {{ as_of_date() }} as as_of_date

    from arms
    left join holdouts
        on arms.campaign_run_id = holdouts.campaign_run_id
        and not arms.is_holdout
    left join runs
        on arms.campaign_run_id = runs.campaign_run_id

)

select * from final
