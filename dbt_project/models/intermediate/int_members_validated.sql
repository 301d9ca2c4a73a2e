-- One row per staged member record, with quarantine_reason null for the one row kept per member_id.
-- Duplicates of a member_id keep the latest signed_up_at, then the most complete record, then a
-- fixed column order (deterministic whatever the file order).
with

members as (

    select * from {{ ref('stg_shop__members') }}

),

checked as (

    select
        *,
        case
            when member_id is null then 'missing_member_id'
            when signed_up_at >= {{ as_of_end() }} then 'after_as_of_date'
        end as invalid_reason,
        (email is not null)::integer
        + (phone_raw is not null)::integer
        + (first_name is not null)::integer
        + (last_name is not null)::integer
        + (birth_date is not null)::integer
        + (country is not null)::integer
        + (locale is not null)::integer
        + (timezone is not null)::integer
        + (currency is not null)::integer
        + (gender <> 'unknown')::integer as completeness

    from members

),

ranked as (

    select
        *,
        row_number() over (
            partition by member_id, invalid_reason is null
            order by
                signed_up_at desc nulls last,
                completeness desc,
                email nulls last,
                phone_raw nulls last,
                first_name nulls last,
                last_name nulls last,
                birth_date nulls last,
                country nulls last,
                source_row_number
        ) as duplicate_rank

    from checked

)

select
    * exclude (invalid_reason, completeness, duplicate_rank),
    coalesce(
        invalid_reason,
        case when duplicate_rank > 1 then 'duplicate_member_id' end
    ) as quarantine_reason

from ranked
