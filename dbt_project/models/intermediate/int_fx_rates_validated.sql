{{ config(materialized='table') }}
-- A table, not a view: campaigns read it at send time (retain.campaigns.products: product cards,
-- offer currency conversion), and a view would show whatever file sits in the landing folder now
-- instead of what the last build that passed the data-quality guards accepted.
-- One row per staged fx rate record with quarantine_reason (null = used), plus an implied
-- rate of 1 for the base currency when the file has no valid row for it.
with

fx_rates as (

    select * from {{ ref('stg_shop__fx_rates') }}

),

checked as (

    select
        *,
        case
            when currency is null then 'missing_currency'
            when rate_to_base is null or rate_to_base <= 0 then 'invalid_rate'
            when currency = '{{ var("base_currency") }}' and rate_to_base <> 1 then 'invalid_rate'
        end as invalid_reason

    from fx_rates

),

ranked as (

    select
        *,
        row_number() over (
            partition by currency, invalid_reason is null
            order by source_row_number
        ) as duplicate_rank

    from checked

),

validated as (

    select
        source_row_number,
        currency,
        rate_to_base,
        coalesce(
            invalid_reason,
            case when duplicate_rank > 1 then 'duplicate_currency' end
        ) as quarantine_reason

    from ranked

),

base_currency as (

    select
        cast(null as bigint) as source_row_number,
        '{{ var("base_currency") }}' as currency,
        1.0::double as rate_to_base,
        cast(null as varchar) as quarantine_reason

    where not exists (
        select 1 from validated
        where currency = '{{ var("base_currency") }}' and quarantine_reason is null
    )

)

select * from validated
union all
select * from base_currency
