-- member_replenishments has one row per (member_id, product_id).
select member_id, product_id, count(*) as rows_per_pair
from {{ ref('member_replenishments') }}
group by member_id, product_id
having count(*) > 1
