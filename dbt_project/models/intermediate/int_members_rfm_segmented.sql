-- One row per scored member with its RFM class. A score is high when strictly above the mean of
-- that score over all scored members (equal to the mean is low). M decides important/general,
-- R and F decide value (R+F+), keep (R-F+), develop (R+F-) or retain (R-F-).
with

scored as (

    select * from {{ ref('int_members_rfm_scored') }}

),

means as (

    select
        avg(r_score) as r_mean,
        avg(f_score) as f_mean,
        avg(m_score) as m_mean

    from scored

),

flagged as (

    select
        scored.*,
        scored.r_score > means.r_mean as is_r_high,
        scored.f_score > means.f_mean as is_f_high,
        scored.m_score > means.m_mean as is_m_high

    from scored
    cross join means

),

segmented as (

    select
        member_id,
        recency_days,
        frequency,
        monetary,
        r_score,
        f_score,
        m_score,
        case when is_m_high then 'important' else 'general' end
        || '_'
        || case
            when is_r_high and is_f_high then 'value'
            when is_f_high then 'keep'
            when is_r_high then 'develop'
            else 'retain'
        end as rfm_segment

    from flagged

)

select * from segmented
