-- In every month each dimension counts the same members (every member has exactly one value per
-- dimension), and no month lies after the as_of month of the run that wrote it.
with

per_dimension as (

    select month, dimension, sum(members) as members, max(as_of_date) as as_of_date
    from {{ ref('kpi_member_distribution') }}
    group by month, dimension

)

select month, dimension, members
from per_dimension
where members <> (select max(p.members) from per_dimension as p where p.month = per_dimension.month)
    or month > date_trunc('month', as_of_date)
