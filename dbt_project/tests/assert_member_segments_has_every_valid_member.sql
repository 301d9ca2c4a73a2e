-- member_segments has exactly one row per valid member: none lost in a join, none added.
with

expected as (

    select count(*) as members from {{ ref('int_members_cleaned') }}

),

actual as (

    select count(*) as members from {{ ref('member_segments') }}

)

select expected.members as expected_members, actual.members as actual_members
from expected, actual
where expected.members <> actual.members
