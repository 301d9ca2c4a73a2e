{{
    config(
        materialized='incremental',
        full_refresh=false
    )
}}
-- One row per entity per good build: how many rows each landing file had when every data-quality
-- guard passed and member_segments was replaced. The row-count guard (dq_max_row_drop_share) compares
-- the next export with the latest build here. Append-only: a build whose guards fail skips this model
-- (it depends on member_segments, member_replenishments and every int_*_validated model, which carry the
-- guards), so it never records a bad export. full_refresh is off so --full-refresh keeps the history.
-- depends_on: {{ ref('member_segments') }}
-- depends_on: {{ ref('member_replenishments') }}
-- depends_on: {{ ref('int_members_validated') }}
-- depends_on: {{ ref('int_orders_validated') }}
-- depends_on: {{ ref('int_order_items_validated') }}
-- depends_on: {{ ref('int_products_validated') }}
-- depends_on: {{ ref('int_events_validated') }}
-- depends_on: {{ ref('int_fx_rates_validated') }}
with

counts as (

    select 'members' as entity, count(*) as row_count from {{ ref('stg_shop__members') }}
    union all
    select 'orders' as entity, count(*) as row_count from {{ ref('stg_shop__orders') }}
    union all
    select 'order_items' as entity, count(*) as row_count from {{ ref('stg_shop__order_items') }}
    union all
    select 'products' as entity, count(*) as row_count from {{ ref('stg_shop__products') }}
    union all
    select 'events' as entity, count(*) as row_count from {{ ref('stg_shop__events') }}
    union all
    select 'fx_rates' as entity, count(*) as row_count from {{ ref('stg_shop__fx_rates') }}

)

select
    '{{ invocation_id }}' as invocation_id,
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp) as built_at,
    {{ as_of_date() }} as as_of_date,
    entity,
    row_count

from counts
