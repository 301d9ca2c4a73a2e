with

source as (

    select * from {{ source('ledger', 'delivery_events') }}

),

renamed as (

    select
        id as delivery_event_id,
        provider,
        provider_event_id,
        delivery_id,
        provider_message_id,
        lower(event_type) as event_type,
        occurred_at,
        received_at

    from source

)

select * from renamed
