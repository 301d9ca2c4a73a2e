-- clv_tier: high is the shortest prefix of members (clv_12m desc) holding at least
-- clv_tier_high_share of the total predicted value, high+mid the shortest holding
-- high_share + mid_share, and no member of a lower tier is worth more than one of a higher tier.
-- Returns the violations.
with

members as (

    select clv_tier, clv_12m from {{ ref('member_segments') }}

),

totals as (

    select sum(clv_12m) as total_value from members

),

tiers as (

    select
        sum(clv_12m) filter (where clv_tier = 'high') as high_value,
        min(clv_12m) filter (where clv_tier = 'high') as high_min,
        sum(clv_12m) filter (where clv_tier in ('high', 'mid')) as high_mid_value,
        min(clv_12m) filter (where clv_tier = 'mid') as mid_min,
        max(clv_12m) filter (where clv_tier = 'mid') as mid_max,
        max(clv_12m) filter (where clv_tier = 'low') as low_max

    from members

),

checks as (

    select 'high holds less than its share' as problem
    from tiers, totals
    where total_value > 0 and coalesce(high_value, 0) < {{ var('clv_tier_high_share') }} * total_value

    union all
    select 'high has a member too many'
    from tiers, totals
    where total_value > 0 and high_value - high_min >= {{ var('clv_tier_high_share') }} * total_value

    union all
    select 'high and mid hold less than their share'
    from tiers, totals
    where total_value > 0
        and coalesce(high_mid_value, 0)
        < ({{ var('clv_tier_high_share') }} + {{ var('clv_tier_mid_share') }}) * total_value

    union all
    select 'mid has a member too many'
    from tiers, totals
    where total_value > 0 and mid_min is not null
        and high_mid_value - mid_min
        >= ({{ var('clv_tier_high_share') }} + {{ var('clv_tier_mid_share') }}) * total_value

    union all
    select 'tiers are not ordered by value'
    from tiers
    where high_min < mid_max or mid_min < low_max or high_min < low_max

)

select * from checks
