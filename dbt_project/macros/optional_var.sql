{#- A var that may be unset: none when it is null, empty, 'none' or 'null' (as --vars strings arrive). -#}
{% macro optional_var(name) -%}
    {%- set value = var(name, none) -%}
    {%- if value is none or (value | string | trim | lower) in ('', 'none', 'null') -%}
        {{- return(none) -}}
    {%- else -%}
        {{- return(value) -}}
    {%- endif -%}
{%- endmacro %}
