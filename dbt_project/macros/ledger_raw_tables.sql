{#-
    on-run-start: create schema raw_ledger and the ledger's raw tables when missing, so every model that
    reads source('ledger', ...) builds on a warehouse that `retain ledger sync` has not reached yet.
    The columns and types come from the source definition (models/staging/_ledger__sources.yml), which
    retain.ledger.export reads too: one definition for dbt and the sync. Existing tables are left alone.
-#}
{% macro create_ledger_raw_tables() -%}
    {%- if execute -%}
        {%- set statements = ["create schema if not exists raw_ledger"] -%}
        {%- for node in graph.sources.values() | sort(attribute='name') if node.source_name == 'ledger' -%}
            {%- set columns = [] -%}
            {%- for column in node.columns.values() -%}
                {%- do columns.append(adapter.quote(column.name) ~ ' ' ~ column.data_type) -%}
            {%- endfor -%}
            {%- do statements.append(
                'create table if not exists ' ~ node.schema ~ '.' ~ node.identifier
                ~ ' (' ~ columns | join(', ') ~ ')'
            ) -%}
        {%- endfor -%}
        {{- statements | join(';\n') -}}
    {%- endif -%}
{%- endmacro %}
