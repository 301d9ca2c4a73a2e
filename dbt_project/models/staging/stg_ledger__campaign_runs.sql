with

source as (

    select * from {{ source('ledger', 'campaign_runs') }}

),

renamed as (

    select
        id as campaign_run_id,
        campaign,
        run_id,
        logical_date,
        dry_run as is_dry_run,
        is_marketing,
        status as run_status,
        paused_reason,
        as_of_date,
        -- the campaign file's attribution window, when the campaign layer records it in the run summary
        try_cast(json_extract_string(summary, '$.attribution_window_days') as integer) as attribution_window_days,
        started_at,
        finished_at

    from source

)

select * from renamed
