-- One row per valid member with its CLV tier. Members are ranked by clv_12m desc, member_id asc;
-- high = the top members who together hold clv_tier_high_share of the total predicted value (a
-- member is high while the value ranked before it is below that share, so the member crossing
-- the line is high), mid = the next clv_tier_mid_share, low = the rest (and everyone when the
-- total is 0). Amounts are decimals, so the split is exact.
with

members as (

    select member_id, clv_12m from {{ ref('int_members_clv_predicted') }}

),

cumulated as (

    select
        member_id,
        clv_12m,
        coalesce(
            sum(clv_12m) over (
                order by clv_12m desc, member_id
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as value_ranked_before,
        sum(clv_12m) over () as total_value

    from members

),

tiered as (

    select
        member_id,
        clv_12m,
        case
            when total_value <= 0 then 'low'
            when value_ranked_before < {{ var('clv_tier_high_share') }} * total_value then 'high'
            when value_ranked_before
                < ({{ var('clv_tier_high_share') }} + {{ var('clv_tier_mid_share') }}) * total_value
                then 'mid'
            else 'low'
        end as clv_tier

    from cumulated

)

select * from tiered
