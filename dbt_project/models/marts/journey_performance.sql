-- One row per journey x step x variant over all the journey's runs, the holdout as its own row
-- (variant 'holdout'), with lift of each treated variant over the step's holdout. The unit is an
-- entry: a member entering the step in one run (a member who enters twice counts twice).
with

units as (

    select *
    from {{ ref('int_campaign_members_attributed') }}
    where journey is not null

),

arms as (

    select
        journey,
        journey_step,
        variant,
        bool_or(is_holdout) as is_holdout,
        count(distinct campaign_run_id) as runs,
        min(logical_date) as first_logical_date,
        max(logical_date) as last_logical_date,
        {{ arm_measures() }}

    from units
    group by journey, journey_step, variant

),

holdouts as (

    select journey, journey_step, audience, converted
    from arms
    where is_holdout

),

final as (

    select
        arms.journey || ':' || arms.journey_step || ':' || arms.variant as journey_performance_id,
        arms.journey,
        arms.journey_step,
        arms.variant,
        arms.is_holdout,
        arms.runs,
        arms.first_logical_date,
        arms.last_logical_date,
        {{ arm_vs_holdout_columns('arms', 'holdouts') }},
        {{ as_of_date() }} as as_of_date

    from arms
    left join holdouts
        on arms.journey = holdouts.journey
        and arms.journey_step = holdouts.journey_step
        and not arms.is_holdout

)

select * from final
