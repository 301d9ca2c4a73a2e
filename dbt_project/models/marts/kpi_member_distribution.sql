{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['month', 'dimension', 'value'],
        full_refresh=false,
        pre_hook="{% if is_incremental() %}delete from {{ this }} where month in (select distinct cast(date_trunc('month', as_of_date) as date) from {{ ref('member_segments') }}){% endif %}"
    )
}}
-- One row per (month, dimension, value): how many members had that value when member_segments
-- was built for an as_of_date in that month. Each run replaces the rows of the as_of month only,
-- so history builds up as the DAG runs monthly (or is backfilled run by run with older
-- as_of_date values). full_refresh is off so `dbt build --full-refresh` cannot wipe history.
-- A null value (e.g. rfm_segment of a prospect) is counted as 'none'. The month and as_of_date come
-- from member_segments itself, so the rows always describe the member_segments that was counted.
with

members as (

    select * from {{ ref('member_segments') }}

),

unpivoted as (

    select as_of_date, 'rfm_segment' as dimension, coalesce(rfm_segment, 'none') as value from members
    union all
    select as_of_date, 'lifecycle_stage' as dimension, coalesce(lifecycle_stage, 'none') as value from members
    union all
    select as_of_date, 'member_tier' as dimension, coalesce(member_tier, 'none') as value from members
    union all
    select as_of_date, 'country' as dimension, coalesce(country, 'none') as value from members
    union all
    select as_of_date, 'age_band' as dimension, coalesce(age_band, 'none') as value from members
    union all
    select as_of_date, 'gender' as dimension, coalesce(gender, 'none') as value from members

),

counted as (

    select
        as_of_date,
        dimension,
        value,
        count(*) as members

    from unpivoted
    group by as_of_date, dimension, value

)

select
    cast(date_trunc('month', as_of_date) as date) as month,
    dimension,
    value,
    members,
    round(members / sum(members) over (partition by as_of_date, dimension), 4) as share,
    as_of_date

from counted
