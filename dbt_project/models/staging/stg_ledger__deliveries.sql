with

source as (

    select * from {{ source('ledger', 'deliveries') }}

),

renamed as (

    select
        id as delivery_id,
        run_pk as campaign_run_id,
        campaign,
        case when campaign like 'journey:%' then substr(campaign, 9) end as journey,
        journey_step,
        member_id as member_ref,
        try_cast(member_id as bigint) as member_id,
        channel,
        logical_date,
        dry_run as is_dry_run,
        is_marketing,
        coalesce(is_test, false) as is_test,
        variant,
        coalesce(skip_reason = 'holdout', false) as is_holdout,
        template,
        status as delivery_status,
        skip_reason,
        provider,
        provider_message_id,
        attempts,
        not_before,
        provider_state,
        provider_state_at,
        created_at,
        updated_at,
        sent_at

    from source

)

select * from renamed
