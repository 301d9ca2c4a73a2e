-- Every KPI rate is a share: between 0 and 1; counted members never exceed the cohort.
select 'kpi_repurchase_rates' as model, cast(first_purchase_month as varchar) as period
from {{ ref('kpi_repurchase_rates') }}
where repurchase_rate_30d not between 0 and 1
    or repurchase_rate_90d not between 0 and 1
    or repurchased_30d > repurchased_90d
    or repurchased_90d > members

union all

select 'kpi_new_member_retention', cast(signup_month as varchar)
from {{ ref('kpi_new_member_retention') }}
where retention_rate_7d not between 0 and 1
    or retention_rate_30d not between 0 and 1
    or retained_7d > retained_30d
    or retained_30d > new_members

union all

select 'kpi_churn_rate', cast(month as varchar)
from {{ ref('kpi_churn_rate') }}
where churn_rate not between 0 and 1
    or members_churned > members_active_at_start
    or members_active_at_start < 0
