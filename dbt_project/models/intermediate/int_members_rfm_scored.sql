-- One row per member with at least one paid order: recency, frequency and monetary with 1-5 scores
-- (5 best). score = 1 + floor(5 * (rank - 1) / scored members), rank ascending in goodness, so tied
-- values share a score and the result never depends on row order.
with

buyers as (

    select
        member_id,
        recency_days,
        rfm_frequency as frequency,
        rfm_monetary as monetary

    from {{ ref('int_members_orders_aggregated') }}
    where paid_orders > 0

),

scored as (

    select
        *,
        cast(1 + floor(5.0 * (rank() over (order by recency_days desc) - 1) / count(*) over ()) as integer)
            as r_score,
        cast(1 + floor(5.0 * (rank() over (order by frequency asc) - 1) / count(*) over ()) as integer)
            as f_score,
        cast(1 + floor(5.0 * (rank() over (order by monetary asc) - 1) / count(*) over ()) as integer)
            as m_score

    from buyers

)

select * from scored
