-- Members with a paid order have r/f/m scores and an RFM class; prospects have none.
select member_id, paid_orders, r_score, f_score, m_score, rfm_segment, lifecycle_stage
from {{ ref('member_segments') }}
where (paid_orders > 0) <> (r_score is not null)
    or (paid_orders > 0) <> (f_score is not null)
    or (paid_orders > 0) <> (m_score is not null)
    or (paid_orders > 0) <> (rfm_segment is not null)
    or (paid_orders = 0) <> (lifecycle_stage = 'prospect')
