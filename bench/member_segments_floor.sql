-- The floor for bench/bench_segments.py: ONE hand-written DuckDB statement that reads the landing
-- parquet files (and the country_calling_codes seed CSV) and computes the member_segments mart with
-- the same rules as dbt_project/models (staging casts and cleaning, member de-duplication, order
-- quarantine and de-duplication, fx conversion, RFM quintile scores with ties sharing a score, the 8
-- RFM classes, lifecycle stage, tier, clv_12m and clv_tier, next_replenish_at, contactability).
-- No intermediate tables, no tests, and only what member_segments needs: the fastest honest way to
-- get the same answer. bench_segments.py checks that every column equals the dbt mart's.
--
-- Two places compute the same result as the dbt models by a cheaper route (both explained where
-- they are): the "reactivated" gap is found without the previous distinct order day (exact while
-- lifecycle_reactivated_within_days <= lifecycle_reactivated_gap_days, which bench_segments.py
-- checks), and replenishment pairs that cannot be upcoming are dropped before the last day's
-- quantities are added up.
--
-- Double-brace placeholders are filled in by bench_segments.py: landing_dir, seed_csv, as_of_date and
-- every dbt var the rules use (values from dbt_project.yml, or the bench's overrides). rfm_filter is
-- `true` when rfm_window_days is null, else `days_ago < <rfm_window_days>`.
create or replace table member_segments_floor as
with

-- members: staging casts and cleaning ------------------------------------------------------------
members_staged as (
    select
        file_row_number as source_row_number,
        try_cast(member_id as bigint) as member_id,
        nullif(trim(try_cast(email as varchar)), '') as email_text,
        nullif(trim(try_cast(phone as varchar)), '') as phone_raw,
        nullif(trim(try_cast(first_name as varchar)), '') as first_name,
        nullif(trim(try_cast(last_name as varchar)), '') as last_name,
        lower(nullif(trim(try_cast(gender as varchar)), '')) as gender_text,
        try_cast(birth_date as date) as birth_date,
        upper(nullif(trim(try_cast(country as varchar)), '')) as country,
        nullif(trim(try_cast(locale as varchar)), '') as locale,
        nullif(trim(try_cast(timezone as varchar)), '') as timezone,
        upper(nullif(trim(try_cast(currency as varchar)), '')) as currency,
        try_cast(signed_up_at as timestamp) as signed_up_at,
        coalesce(try_cast(email_opt_in as boolean), false) as has_email_opt_in,
        coalesce(try_cast(sms_opt_in as boolean), false) as has_sms_opt_in
    from read_parquet('{{ landing_dir }}/members.parquet', file_row_number = true)
),

members_typed as (
    select
        * exclude (email_text, gender_text),
        case
            when regexp_full_match(lower(trim(email_text)), '^[^@\s]+@[^@\s]+\.[^@\s]+$')
                then lower(trim(email_text))
        end as email,
        case
            when gender_text in ('female', 'male', 'other', 'unknown') then gender_text
            when gender_text in ('f', 'woman') then 'female'
            when gender_text in ('m', 'man') then 'male'
            else 'unknown'
        end as gender
    from members_staged
),

-- one record per member_id: valid records only, latest sign-up, most complete, fixed column order
members_kept as (
    select *
    from members_typed
    where member_id is not null
        and (signed_up_at < cast(date '{{ as_of_date }}' + interval 1 day as timestamp) or signed_up_at is null)
    qualify row_number() over (
        partition by member_id
        order by
            signed_up_at desc nulls last,
            (email is not null)::integer + (phone_raw is not null)::integer + (first_name is not null)::integer
            + (last_name is not null)::integer + (birth_date is not null)::integer
            + (country is not null)::integer + (locale is not null)::integer
            + (timezone is not null)::integer + (currency is not null)::integer
            + (gender <> 'unknown')::integer desc,
            email nulls last, phone_raw nulls last, first_name nulls last, last_name nulls last,
            birth_date nulls last, country nulls last, source_row_number
    ) = 1
),

calling_codes as (
    select
        country,
        calling_code,
        trunk_prefix,
        try_cast(min_national_digits as integer) as min_national_digits,
        try_cast(max_national_digits as integer) as max_national_digits
    from read_csv('{{ seed_csv }}', header = true, all_varchar = true)
),

-- phone to E.164 (national numbers via the member's country's calling code and trunk prefix)
members_phone as (
    select
        m.*,
        regexp_full_match(m.phone_raw, '^\+?[0-9 ()./-]+$') as is_phone_shaped,
        regexp_replace(replace(m.phone_raw, '(0)', ''), '[^0-9]', '', 'g') as phone_digits,
        c.calling_code, c.trunk_prefix, c.min_national_digits, c.max_national_digits
    from members_kept m
    left join calling_codes c on m.country = c.country
),

members_clean as (
    select
        member_id, first_name, last_name, country, locale, timezone, currency, gender, signed_up_at, email,
        has_email_opt_in, has_sms_opt_in,
        case
            when birth_date <= date '{{ as_of_date }}' and birth_date > date '{{ as_of_date }}' - interval 120 years
                then birth_date
        end as birth_date,
        case
            when regexp_full_match(international_digits, '[1-9][0-9]{7,14}') then '+' || international_digits
        end as phone_e164
    from (
        select
            *,
            case
                when not is_phone_shaped then null
                when starts_with(phone_raw, '+') then phone_digits
                when starts_with(phone_digits, '00') then substr(phone_digits, 3)
                when length(national_digits) between min_national_digits and max_national_digits
                    then calling_code || national_digits
                when length(phone_digits) between min_national_digits and max_national_digits
                    then calling_code || phone_digits
                when starts_with(phone_digits, calling_code)
                    and length(phone_digits) - length(calling_code) between min_national_digits and max_national_digits
                    then phone_digits
            end as international_digits
        from (
            select
                *,
                case
                    when trunk_prefix is not null and starts_with(phone_digits, trunk_prefix)
                        then substr(phone_digits, length(trunk_prefix) + 1)
                    else phone_digits
                end as national_digits
            from members_phone
        )
    )
),

-- fx: first valid row per currency; the base currency at 1 unless the file has a valid row for it
fx_staged as (
    select
        file_row_number as source_row_number,
        upper(nullif(trim(try_cast(currency as varchar)), '')) as currency,
        try_cast(rate_to_base as double) as rate_to_base
    from read_parquet('{{ landing_dir }}/fx_rates.parquet', file_row_number = true)
),

fx_valid as (
    select currency, arg_min(rate_to_base, source_row_number) as rate_to_base
    from fx_staged
    where currency is not null
        and not (rate_to_base is null or rate_to_base <= 0)
        and not (currency = '{{ base_currency }}' and rate_to_base <> 1)
    group by currency
),

fx as (
    select * from fx_valid
    union all
    select '{{ base_currency }}', 1.0::double
    where not exists (select 1 from fx_valid where currency = '{{ base_currency }}')
),

-- orders: clean records, then one per order_id (the first by the quarantine model's order)
orders_clean as (
    select
        o.order_id, o.member_id, o.ordered_at, o.status,
        cast(round(o.amount * fx.rate_to_base, 2) as decimal(18, 2)) as amount_base
    from (
        select
            file_row_number as source_row_number,
            try_cast(order_id as bigint) as order_id,
            try_cast(member_id as bigint) as member_id,
            try_cast(ordered_at as timestamp) as ordered_at,
            upper(nullif(trim(try_cast(currency as varchar)), '')) as currency,
            try_cast(amount as double) as amount,
            lower(nullif(trim(try_cast(status as varchar)), '')) as status
        from read_parquet('{{ landing_dir }}/orders.parquet', file_row_number = true)
    ) o
    inner join fx on o.currency = fx.currency
    semi join members_kept m on o.member_id = m.member_id
    where o.order_id is not null
        and o.ordered_at < cast(date '{{ as_of_date }}' + interval 1 day as timestamp)
        and o.status in ('paid', 'refunded', 'cancelled')
        and not (o.amount is null or isnan(o.amount) or isinf(o.amount))
        and o.amount >= 0
    qualify row_number() over (
        partition by o.order_id
        order by o.ordered_at desc nulls last, o.amount desc nulls last, o.status nulls last,
            o.member_id nulls last, o.currency nulls last, o.source_row_number
    ) = 1
),

paid_orders as (
    select
        member_id, order_id, ordered_at, amount_base,
        cast(ordered_at as date) as order_date,
        date_diff('day', cast(ordered_at as date), date '{{ as_of_date }}') as days_ago
    from orders_clean
    where status = 'paid'
),

-- per member in one pass. lifecycle only needs the gap before the last order day when that day is
-- within lifecycle_reactivated_within_days (R): then, if the window {days_ago <= R} holds a second
-- distinct order day, the gap is <= R <= lifecycle_reactivated_gap_days and the rule cannot fire;
-- otherwise the previous day is the last order day before the window. (bench_segments.py checks R <= G.)
orders_by_member as (
    select
        member_id,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at,
        min(order_date) as first_order_date,
        min(days_ago) as recency_days,
        max(days_ago) filter (where days_ago <= {{ lifecycle_reactivated_within_days }}) as oldest_recent_days_ago,
        min(days_ago) filter (where days_ago > {{ lifecycle_reactivated_within_days }}) as previous_days_ago,
        count(*) as paid_orders,
        sum(amount_base) as paid_amount_base,
        count(*) filter (where days_ago < {{ lifecycle_loyal_window_days }}) as paid_orders_loyal_window,
        sum(amount_base) filter (where days_ago < 30) as spend_30d,
        sum(amount_base) filter (where days_ago < 365) as spend_365d,
        count(*) filter (where {{ rfm_filter }}) as rfm_frequency,
        sum(amount_base) filter (where {{ rfm_filter }}) as rfm_monetary
    from paid_orders
    group by member_id
),

members_orders as (
    select
        m.member_id,
        o.first_order_at,
        o.last_order_at,
        o.first_order_date,
        o.recency_days,
        -- the gap before the last order day when it matters (else null: the rule cannot fire)
        case
            when o.oldest_recent_days_ago = o.recency_days then o.previous_days_ago - o.recency_days
        end as reactivation_gap_days,
        coalesce(o.paid_orders, 0)::integer as paid_orders,
        coalesce(o.paid_amount_base, 0)::decimal(18, 2) as paid_amount_base,
        coalesce(o.paid_orders_loyal_window, 0)::integer as paid_orders_loyal_window,
        coalesce(o.spend_30d, 0)::decimal(18, 2) as spend_30d,
        coalesce(o.spend_365d, 0)::decimal(18, 2) as spend_365d,
        coalesce(o.rfm_frequency, 0)::integer as rfm_frequency,
        coalesce(o.rfm_monetary, 0)::decimal(18, 2) as rfm_monetary
    from members_clean m
    left join orders_by_member o on m.member_id = o.member_id
),

-- RFM: 1 + floor(5 * (rank - 1) / buyers), ties share a rank; high = strictly above the mean score
rfm_scored as (
    select
        member_id,
        cast(1 + floor(5.0 * (rank() over (order by recency_days desc) - 1) / count(*) over ()) as integer) as r_score,
        cast(1 + floor(5.0 * (rank() over (order by rfm_frequency asc) - 1) / count(*) over ()) as integer) as f_score,
        cast(1 + floor(5.0 * (rank() over (order by rfm_monetary asc) - 1) / count(*) over ()) as integer) as m_score
    from members_orders
    where paid_orders > 0
),

rfm as (
    select
        member_id, r_score, f_score, m_score,
        case when m_score > avg(m_score) over () then 'important' else 'general' end
        || '_'
        || case
            when r_score > avg(r_score) over () and f_score > avg(f_score) over () then 'value'
            when f_score > avg(f_score) over () then 'keep'
            when r_score > avg(r_score) over () then 'develop'
            else 'retain'
        end as rfm_segment
    from rfm_scored
),

-- CLV: shrunk repeat rate x shrunk AOV x probability alive
clv_buyers as (
    select
        member_id, paid_orders, paid_amount_base, recency_days,
        date_diff('day', first_order_date, date '{{ as_of_date }}') / 365.25 as exposure_years
    from members_orders
    where paid_orders > 0
),

clv_rates as (
    select
        b.member_id,
        b.recency_days,
        coalesce(
            (b.paid_orders - 1 + {{ clv_prior_years }} * p.repeat_orders_per_year)
            / nullif(b.exposure_years + {{ clv_prior_years }}, 0),
            0
        ) as orders_per_year,
        (b.paid_amount_base::double + {{ clv_aov_prior_orders }} * p.aov)
        / (b.paid_orders + {{ clv_aov_prior_orders }}) as expected_aov
    from clv_buyers b
    cross join (
        select
            coalesce(sum(paid_orders - 1) / nullif(sum(exposure_years), 0), 0) as repeat_orders_per_year,
            coalesce(sum(paid_amount_base)::double / nullif(sum(paid_orders), 0), 0) as aov
        from clv_buyers
    ) p
),

clv_predicted as (
    select
        member_id,
        orders_per_year * {{ clv_horizon_days }} / 365.25
        * case
            when typical_gap_days is null then 0.0
            else pow(
                0.5,
                greatest(recency_days - typical_gap_days, 0) / ({{ clv_alive_half_life_gaps }} * typical_gap_days)
            )
        end
        * expected_aov as clv_raw
    from (
        select *, case when orders_per_year > 0 then 365.25 / orders_per_year end as typical_gap_days
        from clv_rates
    )
),

clv as (
    select
        member_id,
        clv_12m,
        case
            when sum(clv_12m) over () <= 0 then 'low'
            when coalesce(sum(clv_12m) over ranked, 0) < {{ clv_tier_high_share }} * sum(clv_12m) over () then 'high'
            when coalesce(sum(clv_12m) over ranked, 0)
                < ({{ clv_tier_high_share }} + {{ clv_tier_mid_share }}) * sum(clv_12m) over () then 'mid'
            else 'low'
        end as clv_tier
    from (
        select m.member_id, cast(round(coalesce(c.clv_raw, 0), 2) as decimal(18, 2)) as clv_12m
        from members_orders m
        left join clv_predicted c on m.member_id = c.member_id
    )
    window ranked as (order by clv_12m desc, member_id rows between unbounded preceding and 1 preceding)
),

-- replenishment: per member x consumable product, the last purchase day's quantity lasts
-- quantity * consumption_days; next_replenish_at = the earliest such day on or after as_of_date
products as (
    select product_id, consumption_days
    from (
        select
            try_cast(product_id as bigint) as product_id,
            case when try_cast(consumption_days as integer) > 0 then try_cast(consumption_days as integer) end
                as consumption_days
        from read_parquet('{{ landing_dir }}/products.parquet', file_row_number = true)
        where try_cast(product_id as bigint) is not null
        qualify row_number() over (partition by try_cast(product_id as bigint) order by file_row_number) = 1
    )
    where consumption_days is not null
),

purchased_lines as (
    select o.member_id, i.product_id, o.order_date, i.quantity, p.consumption_days
    from (
        select
            try_cast(order_id as bigint) as order_id,
            try_cast(product_id as bigint) as product_id,
            try_cast(quantity as integer) as quantity,
            try_cast(unit_price as double) as unit_price
        from read_parquet('{{ landing_dir }}/order_items.parquet')
    ) i
    inner join paid_orders o on i.order_id = o.order_id
    inner join products p on i.product_id = p.product_id
    where i.quantity > 0 and (i.unit_price < 0) is not true
),

-- per member x product: the last purchase day. The quantity bought that day is at most the pair's total
-- quantity, so a pair whose total cannot last until as_of_date is never upcoming and is dropped here.
candidate_pairs as (
    select member_id, product_id, last_date, consumption_days
    from (
        select
            member_id,
            product_id,
            max(order_date) as last_date,
            sum(quantity) as total_quantity,
            any_value(consumption_days) as consumption_days
        from purchased_lines
        group by member_id, product_id
    )
    where last_date + to_days(cast(total_quantity * consumption_days as integer)) >= date '{{ as_of_date }}'
),

replenishments as (
    select member_id, min(runs_out_on) filter (where runs_out_on >= date '{{ as_of_date }}') as next_replenish_at
    from (
        select
            c.member_id,
            cast(
                c.last_date + to_days(cast(sum(l.quantity) * any_value(c.consumption_days) as integer))
                as date
            ) as runs_out_on
        from candidate_pairs c
        inner join purchased_lines l
            on l.member_id = c.member_id and l.product_id = c.product_id and l.order_date = c.last_date
        group by c.member_id, c.product_id, c.last_date
    )
    group by member_id
)

select
    m.member_id,
    m.first_name,
    m.last_name,
    m.country,
    m.locale,
    m.timezone,
    m.currency,
    m.gender,
    m.birth_date,
    date_sub('year', m.birth_date, date '{{ as_of_date }}') as age,
    case
        when m.birth_date is null then 'unknown'
        when date_sub('year', m.birth_date, date '{{ as_of_date }}') < 18 then 'under_18'
        when date_sub('year', m.birth_date, date '{{ as_of_date }}') < 25 then '18_24'
        when date_sub('year', m.birth_date, date '{{ as_of_date }}') < 35 then '25_34'
        when date_sub('year', m.birth_date, date '{{ as_of_date }}') < 45 then '35_44'
        when date_sub('year', m.birth_date, date '{{ as_of_date }}') < 55 then '45_54'
        when date_sub('year', m.birth_date, date '{{ as_of_date }}') < 65 then '55_64'
        else '65_plus'
    end as age_band,
    m.signed_up_at,
    m.email,
    m.phone_e164,
    o.first_order_at,
    o.last_order_at,
    o.recency_days,
    o.rfm_frequency as frequency,
    o.rfm_monetary as monetary,
    cast(case when o.rfm_frequency > 0 then o.rfm_monetary / o.rfm_frequency end as decimal(18, 2)) as aov,
    o.paid_orders,
    rfm.r_score,
    rfm.f_score,
    rfm.m_score,
    rfm.rfm_segment,
    case
        when o.paid_orders = 0 then 'prospect'
        when o.recency_days <= {{ lifecycle_reactivated_within_days }}
            and o.reactivation_gap_days > {{ lifecycle_reactivated_gap_days }} then 'reactivated'
        when o.paid_orders = 1 and o.recency_days <= {{ lifecycle_new_days }} then 'new'
        when o.paid_orders_loyal_window >= {{ lifecycle_loyal_min_orders }}
            and o.recency_days <= {{ lifecycle_loyal_recency_days }} then 'loyal'
        when o.recency_days <= {{ lifecycle_active_days }} then 'active'
        when o.recency_days <= {{ lifecycle_at_risk_days }} then 'at_risk'
        when o.recency_days <= {{ lifecycle_dormant_days }} then 'dormant'
        else 'churned'
    end as lifecycle_stage,
    case
        when o.spend_365d >= {{ tier_super_spend_365d }} then 'super'
        when o.spend_30d >= {{ tier_senior_spend_30d }} or o.spend_365d >= {{ tier_senior_spend_365d }} then 'senior'
        else 'ordinary'
    end as member_tier,
    o.spend_30d,
    o.spend_365d,
    clv.clv_12m,
    clv.clv_tier,
    r.next_replenish_at,
    m.has_email_opt_in and m.email is not null as is_email_contactable,
    m.has_sms_opt_in and m.phone_e164 is not null as is_sms_contactable,
    date '{{ as_of_date }}' as as_of_date
from members_clean m
inner join members_orders o on m.member_id = o.member_id
inner join clv on m.member_id = clv.member_id
left join rfm on m.member_id = rfm.member_id
left join replenishments r on m.member_id = r.member_id
