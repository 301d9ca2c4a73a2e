-- next_replenish_at is the earliest runout on or after as_of_date, never before it.
select member_id, next_replenish_at, as_of_date
from {{ ref('member_segments') }}
where next_replenish_at < as_of_date
