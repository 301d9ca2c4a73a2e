-- One row per campaign run x journey step x variant (holdout as its own) x member of the measured
-- audience, with what the messages did and the member's paid orders in the attribution window.
-- Left out: test sends, dry runs, rows skipped for a reason in measurement_excluded_skip_reasons
-- (never randomised into this campaign) and member ids that are not warehouse members.
-- The window is the campaign's attribution_window_days when its run summary records one, else the var
-- attribution_window_days. It opens at the first send of the step to the member; for the holdout, and for treated
-- members who were not sent (no consent, suppressed, capped...), at the run's logical date (the
-- would-be-send time): conversion is measured on everyone assigned (intent to treat).
with

deliveries as (

    select *
    from {{ ref('stg_ledger__deliveries') }}
    where not is_test
        and not is_dry_run
        and member_id is not null
        and {{ measured_skip_reason('skip_reason') }}

),

events as (

    select
        delivery_id,
        bool_or(event_type = 'delivered') as has_delivered,
        bool_or(event_type in ('bounce', 'dropped', 'undelivered', 'failed')) as has_bounced,
        bool_or(event_type = 'open') as has_opened,
        bool_or(event_type = 'click') as has_clicked,
        bool_or(event_type in ('unsubscribe', 'group_unsubscribe', 'stop')) as has_unsubscribed

    from {{ ref('stg_ledger__delivery_events') }}
    where delivery_id is not null
    group by delivery_id

),

messages as (

    select
        deliveries.campaign,
        deliveries.journey,
        deliveries.campaign_run_id,
        deliveries.journey_step,
        case when deliveries.is_holdout then 'holdout' else coalesce(deliveries.variant, 'default') end
            as variant,
        deliveries.is_holdout,
        deliveries.member_id,
        deliveries.logical_date,
        deliveries.sent_at,
        deliveries.delivery_status = 'sent' as is_sent,
        deliveries.delivery_status = 'sent'
        and (coalesce(events.has_delivered, false) or deliveries.provider_state = 'delivered') as is_delivered,
        deliveries.delivery_status = 'sent'
        and (
            coalesce(events.has_bounced, false)
            or deliveries.provider_state in ('bounce', 'dropped', 'undelivered', 'failed')
        ) as is_bounced,
        deliveries.delivery_status = 'sent'
        and (coalesce(events.has_opened, false) or deliveries.provider_state = 'open') as is_opened,
        deliveries.delivery_status = 'sent'
        and (coalesce(events.has_clicked, false) or deliveries.provider_state = 'click') as is_clicked,
        deliveries.delivery_status = 'sent'
        and (
            coalesce(events.has_unsubscribed, false)
            or deliveries.provider_state in ('unsubscribe', 'group_unsubscribe', 'stop')
        ) as is_unsubscribed

    from deliveries
    left join events
        on deliveries.delivery_id = events.delivery_id

),

members as (

    select
        campaign,
        any_value(journey) as journey,
        campaign_run_id,
        journey_step,
        variant,
        bool_or(is_holdout) as is_holdout,
        member_id,
        min(logical_date) as logical_date,
        min(sent_at) filter (where is_sent) as first_sent_at,
        count(*) as messages,
        count(*) filter (where is_sent) as messages_sent,
        count(*) filter (where is_delivered) as messages_delivered,
        count(*) filter (where is_bounced) as messages_bounced,
        count(*) filter (where is_opened) as messages_opened,
        count(*) filter (where is_clicked) as messages_clicked,
        count(*) filter (where is_unsubscribed) as messages_unsubscribed

    from messages
    group by campaign, campaign_run_id, journey_step, variant, member_id

),

runs as (

    select campaign_run_id, attribution_window_days
    from {{ ref('stg_ledger__campaign_runs') }}

),

windows as (

    select
        members.*,
        coalesce(runs.attribution_window_days, {{ var('attribution_window_days') }}) as attribution_window_days,
        case when members.is_holdout or members.first_sent_at is null then members.logical_date
            else members.first_sent_at end as attribution_start_at,
        case when members.is_holdout or members.first_sent_at is null then members.logical_date
            else members.first_sent_at end
        + to_days(coalesce(runs.attribution_window_days, {{ var('attribution_window_days') }}))
            as attribution_end_at

    from members
    left join runs
        on members.campaign_run_id = runs.campaign_run_id

),

paid_orders as (

    select member_id, ordered_at, amount_base
    from {{ ref('int_orders_validated') }}
    where quarantine_reason is null and is_paid

),

attributed as (

    select
        windows.campaign_run_id,
        windows.journey_step,
        windows.variant,
        windows.member_id,
        count(*) as orders,
        sum(paid_orders.amount_base) as revenue_base

    from windows
    inner join paid_orders
        on windows.member_id = paid_orders.member_id
        and paid_orders.ordered_at > windows.attribution_start_at
        and paid_orders.ordered_at <= windows.attribution_end_at
    group by windows.campaign_run_id, windows.journey_step, windows.variant, windows.member_id

),

final as (

    select
        windows.*,
        coalesce(attributed.orders, 0) as orders,
        coalesce(attributed.orders, 0) > 0 as is_converted,
        coalesce(attributed.revenue_base, 0)::decimal(18, 2) as revenue_base,
        windows.attribution_end_at <= {{ as_of_end() }} as is_attribution_complete

    from windows
    left join attributed
        on windows.campaign_run_id = attributed.campaign_run_id
        and windows.journey_step = attributed.journey_step
        and windows.variant = attributed.variant
        and windows.member_id = attributed.member_id

)

select * from final
