-- One row per staged event with quarantine_reason (null = a clean event of a known member on or
-- before as_of_date). Repeated event_ids are not quarantined: events are only used to tell
-- whether a member came back, which a repeat cannot change.
with

events as (

    select * from {{ ref('stg_shop__events') }}

),

members as (

    select member_id from {{ ref('int_members_cleaned') }}

),

final as (

    select
        events.*,
        cast(events.occurred_at as date) as occurred_on,
        case
            when events.event_id is null then 'missing_event_id'
            when events.occurred_at is null then 'missing_occurred_at'
            when events.occurred_at >= {{ as_of_end() }} then 'after_as_of_date'
            when events.member_id is null then 'missing_member_id'
            when members.member_id is null then 'unknown_member'
            when events.event_type is null
                or events.event_type not in ('view', 'favorite', 'add_to_cart', 'search', 'share', 'review')
                then 'unknown_event_type'
        end as quarantine_reason

    from events
    left join members
        on events.member_id = members.member_id

)

select * from final
