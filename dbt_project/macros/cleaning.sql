{#- Lower-cased, trimmed e-mail address, or null when empty or not shaped like local@domain.tld. -#}
{% macro clean_email(column) -%}
    case
        when regexp_full_match(lower(trim({{ column }})), '^[^@\s]+@[^@\s]+\.[^@\s]+$')
            then lower(trim({{ column }}))
    end
{%- endmacro %}

{#- Trimmed text, with empty strings as null (any input type). -#}
{% macro clean_text(column) -%}
    nullif(trim(try_cast({{ column }} as varchar)), '')
{%- endmacro %}
