-- One row per valid member with clv_12m, the paid spend (base currency) expected over the next
-- clv_horizon_days. A transparent model in three factors:
--   orders_per_year  = (repeat orders + clv_prior_years * population repeat rate)
--                      / (years since first paid order + clv_prior_years)
--                      (a Gamma-Poisson posterior mean: few orders -> close to the population rate)
--   expected_aov     = (paid amount + clv_aov_prior_orders * population AOV)
--                      / (paid orders + clv_aov_prior_orders)
--   p_alive          = 0.5 ^ (days overdue / (clv_alive_half_life_gaps * typical gap)),
--                      typical gap = 365.25 / orders_per_year, days overdue = recency beyond it
--   clv_12m          = orders_per_year * horizon years * p_alive * expected_aov
-- Prospects (no paid order) get 0: their first purchase is an acquisition question.
with

members as (

    select * from {{ ref('int_members_orders_aggregated') }}

),

buyers as (

    select
        member_id,
        paid_orders,
        paid_amount_base,
        recency_days,
        date_diff('day', first_order_date, {{ as_of_date() }}) / 365.25 as exposure_years

    from members
    where paid_orders > 0

),

population as (

    select
        coalesce(sum(paid_orders - 1) / nullif(sum(exposure_years), 0), 0) as repeat_orders_per_year,
        coalesce(sum(paid_amount_base)::double / nullif(sum(paid_orders), 0), 0) as aov

    from buyers

),

rates as (

    select
        buyers.member_id,
        buyers.recency_days,
        coalesce(
            (buyers.paid_orders - 1 + {{ var('clv_prior_years') }} * population.repeat_orders_per_year)
            / nullif(buyers.exposure_years + {{ var('clv_prior_years') }}, 0),
            0
        ) as orders_per_year,
        (buyers.paid_amount_base::double + {{ var('clv_aov_prior_orders') }} * population.aov)
        / (buyers.paid_orders + {{ var('clv_aov_prior_orders') }}) as expected_aov

    from buyers
    cross join population

),

alive as (

    select
        *,
        case when orders_per_year > 0 then 365.25 / orders_per_year end as typical_gap_days

    from rates

),

predicted as (

    select
        *,
        case
            when typical_gap_days is null then 0.0
            else pow(
                0.5,
                greatest(recency_days - typical_gap_days, 0)
                / ({{ var('clv_alive_half_life_gaps') }} * typical_gap_days)
            )
        end as p_alive

    from alive

),

final as (

    select
        members.member_id,
        coalesce(predicted.orders_per_year, 0) as orders_per_year,
        coalesce(predicted.expected_aov, 0) as expected_aov,
        coalesce(predicted.p_alive, 0) as p_alive,
        cast(
            round(
                coalesce(
                    predicted.orders_per_year * {{ var('clv_horizon_days') }} / 365.25
                    * predicted.p_alive * predicted.expected_aov,
                    0
                ),
                2
            ) as decimal(18, 2)
        ) as clv_12m

    from members
    left join predicted
        on members.member_id = predicted.member_id

)

select * from final
