{#-
    The one reference date of a run, as a SQL date expression. Every model calls this macro, so all
    of them see the same value: var('as_of_date') when set, else the UTC date the dbt run started
    (run_started_at is fixed for the whole invocation, so a run crossing midnight stays consistent).
-#}
{% macro as_of_date() -%}
    {%- set value = optional_var('as_of_date') -%}
    {%- if value is none -%}
        cast('{{ run_started_at.strftime("%Y-%m-%d") }}' as date)
    {%- else -%}
        cast('{{ value | string | trim }}' as date)
    {%- endif -%}
{%- endmacro %}

{#- First instant after as_of_date: a timestamp is "on or before as_of_date" when it is below this. -#}
{% macro as_of_end() -%}
    cast({{ as_of_date() }} + interval 1 day as timestamp)
{%- endmacro %}
