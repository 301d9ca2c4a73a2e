-- Every quarantine reason belongs to the entity it is reported for (the per-entity lists of
-- int_*_validated); dq_quarantine.reason's accepted_values only checks the union.
with

allowed (entity, reason) as (

    values
        ('members', 'missing_member_id'),
        ('members', 'after_as_of_date'),
        ('members', 'duplicate_member_id'),
        ('orders', 'missing_order_id'),
        ('orders', 'duplicate_order_id'),
        ('orders', 'missing_ordered_at'),
        ('orders', 'after_as_of_date'),
        ('orders', 'missing_member_id'),
        ('orders', 'unknown_member'),
        ('orders', 'unknown_status'),
        ('orders', 'missing_amount'),
        ('orders', 'negative_amount'),
        ('orders', 'unknown_currency'),
        ('order_items', 'missing_order_id'),
        ('order_items', 'unknown_order'),
        ('order_items', 'missing_product_id'),
        ('order_items', 'unknown_product'),
        ('order_items', 'invalid_quantity'),
        ('order_items', 'negative_unit_price'),
        ('products', 'missing_product_id'),
        ('products', 'duplicate_product_id'),
        ('events', 'missing_event_id'),
        ('events', 'missing_occurred_at'),
        ('events', 'after_as_of_date'),
        ('events', 'missing_member_id'),
        ('events', 'unknown_member'),
        ('events', 'unknown_event_type'),
        ('fx_rates', 'missing_currency'),
        ('fx_rates', 'invalid_rate'),
        ('fx_rates', 'duplicate_currency')

)

select quarantine.entity, quarantine.reason, count(*) as rows_quarantined
from {{ ref('dq_quarantine') }} as quarantine
left join allowed
    on quarantine.entity = allowed.entity
    and quarantine.reason = allowed.reason
where allowed.reason is null
group by quarantine.entity, quarantine.reason
