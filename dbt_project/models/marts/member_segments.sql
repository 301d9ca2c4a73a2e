-- One row per valid member (after cleaning; prospects included) with everything journeys and
-- audiences select on: profile, contactability, RFM, lifecycle stage, tier, CLV, replenishment.
with

members as (

    select * from {{ ref('int_members_cleaned') }}

),

orders as (

    select * from {{ ref('int_members_orders_aggregated') }}

),

rfm as (

    select * from {{ ref('int_members_rfm_segmented') }}

),

lifecycle as (

    select * from {{ ref('int_members_lifecycle_staged') }}

),

tiers as (

    select * from {{ ref('int_members_tiered') }}

),

clv as (

    select * from {{ ref('int_members_clv_tiered') }}

),

replenishments as (

    select
        member_id,
        min(runs_out_on) as next_replenish_at

    from {{ ref('member_replenishments') }}
    where is_upcoming
    group by member_id

),

final as (

    select
        members.member_id,
        members.first_name,
        members.last_name,
        members.country,
        members.locale,
        members.timezone,
        members.currency,
        members.gender,
        members.birth_date,
        members.age,
        members.age_band,
        members.signed_up_at,
        members.email,
        members.phone_e164,
        orders.first_order_at,
        orders.last_order_at,
        orders.recency_days,
        orders.rfm_frequency as frequency,
        orders.rfm_monetary as monetary,
        cast(
            case when orders.rfm_frequency > 0 then orders.rfm_monetary / orders.rfm_frequency end
            as decimal(18, 2)
        ) as aov,
        orders.paid_orders,
        rfm.r_score,
        rfm.f_score,
        rfm.m_score,
        rfm.rfm_segment,
        lifecycle.lifecycle_stage,
        tiers.member_tier,
        tiers.spend_30d,
        tiers.spend_365d,
        clv.clv_12m,
        clv.clv_tier,
        replenishments.next_replenish_at,
        members.is_email_contactable,
        members.is_sms_contactable,
        {{ as_of_date() }} as as_of_date

    from members
    inner join orders
        on members.member_id = orders.member_id
    inner join lifecycle
        on members.member_id = lifecycle.member_id
    inner join tiers
        on members.member_id = tiers.member_id
    inner join clv
        on members.member_id = clv.member_id
    left join rfm
        on members.member_id = rfm.member_id
    left join replenishments
        on members.member_id = replenishments.member_id

)

select * from final
