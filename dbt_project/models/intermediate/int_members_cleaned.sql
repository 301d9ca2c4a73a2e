{{ config(materialized='table') }}
-- One row per valid member: the kept record of int_members_validated with contact details cleaned
-- (phone to E.164 via the country_calling_codes seed), birth dates checked and consent resolved.
with

members as (

    select * from {{ ref('int_members_validated') }}
    where quarantine_reason is null

),

calling_codes as (

    select * from {{ ref('country_calling_codes') }}

),

phones as (

    select
        members.*,
        regexp_full_match(members.phone_raw, '^\+?[0-9 ()./-]+$') as is_phone_shaped,
        -- "+44 (0)7700 ..." writes the trunk prefix in brackets: it is not part of the number
        regexp_replace(replace(members.phone_raw, '(0)', ''), '[^0-9]', '', 'g') as phone_digits,
        calling_codes.calling_code,
        calling_codes.trunk_prefix,
        calling_codes.min_national_digits,
        calling_codes.max_national_digits

    from members
    left join calling_codes
        on members.country = calling_codes.country

),

phones_national as (

    select
        *,
        case
            when trunk_prefix is not null and starts_with(phone_digits, trunk_prefix)
                then substr(phone_digits, length(trunk_prefix) + 1)
            else phone_digits
        end as national_digits

    from phones

),

phones_international as (

    select
        *,
        case
            when not is_phone_shaped then null
            -- already international: +CC... or 00CC...
            when starts_with(phone_raw, '+') then phone_digits
            when starts_with(phone_digits, '00') then substr(phone_digits, 3)
            -- national number for the member's country, trunk prefix dropped
            when length(national_digits) between min_national_digits and max_national_digits
                then calling_code || national_digits
            when length(phone_digits) between min_national_digits and max_national_digits
                then calling_code || phone_digits
            -- international digits written without + or 00
            when starts_with(phone_digits, calling_code)
                and length(phone_digits) - length(calling_code)
                between min_national_digits and max_national_digits
                then phone_digits
        end as international_digits

    from phones_national

),

cleaned as (

    select
        member_id,
        email,
        case
            when regexp_full_match(international_digits, '[1-9][0-9]{7,14}')
                then '+' || international_digits
        end as phone_e164,
        first_name,
        last_name,
        gender,
        case
            when birth_date <= {{ as_of_date() }}
                and birth_date > {{ as_of_date() }} - interval 120 years
                then birth_date
        end as birth_date,
        country,
        locale,
        timezone,
        currency,
        signed_up_at,
        has_email_opt_in,
        has_sms_opt_in

    from phones_international

),

final as (

    select
        *,
        date_sub('year', birth_date, {{ as_of_date() }}) as age,
        case
            when birth_date is null then 'unknown'
            when date_sub('year', birth_date, {{ as_of_date() }}) < 18 then 'under_18'
            when date_sub('year', birth_date, {{ as_of_date() }}) < 25 then '18_24'
            when date_sub('year', birth_date, {{ as_of_date() }}) < 35 then '25_34'
            when date_sub('year', birth_date, {{ as_of_date() }}) < 45 then '35_44'
            when date_sub('year', birth_date, {{ as_of_date() }}) < 55 then '45_54'
            when date_sub('year', birth_date, {{ as_of_date() }}) < 65 then '55_64'
            else '65_plus'
        end as age_band,
        has_email_opt_in and email is not null as is_email_contactable,
        has_sms_opt_in and phone_e164 is not null as is_sms_contactable

    from cleaned

)

select * from final
