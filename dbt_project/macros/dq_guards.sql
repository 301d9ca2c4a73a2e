{#-
    Data-quality guards: generic data tests (severity error) on what must be true of a landing export
    before the marts are replaced (docs/dbt-models.md, "Data-quality guards"). They sit on the staging
    views and the int_*_validated models, so `dbt build` runs them before any mart and a failure SKIPs
    member_segments, member_replenishments and everything else downstream: the marts keep the last
    good build. Each returns one row per breach with a `message` that states the numbers, logs that
    message (so it shows in the dbt output and the Airflow task log) and, with store_failures, leaves
    the rows in main_dbt_test__audit.<guard name>.
-#}

{#- The SQL a guard test runs. While dbt runs tests, the guard's query runs once here, every breach is
    logged as "DQ guard failed: <message>", and the test selects those rows as literals (so the query is
    not run twice; the compiled test keeps the query in a comment). Otherwise (dbt compile, show) the
    query itself. -#}
{% macro dq_guard(guard_sql) -%}
    {%- if execute and flags.WHICH in ('build', 'test', 'retry') -%}
        {%- set result = run_query(guard_sql) -%}
        {%- for row in result.rows -%}
            {%- do log('DQ guard failed: ' ~ row['message'], info=True) -%}
        {%- endfor %}
/* the guard's query, run once when the test was compiled:
{{ guard_sql | replace('*/', '* /') }}
*/
        {%- if result.rows | length == 0 %}
select null as message where false
        {%- else %}
select * from (values
            {%- for row in result.rows %}
    ({% for value in row.values() %}{{ dq_literal(value) }}{% if not loop.last %}, {% endif %}{% endfor %}){% if not loop.last %},{% endif %}
            {%- endfor %}
) as breaches({{ result.column_names | join(', ') }})
        {%- endif -%}
    {%- else -%}
        {{ guard_sql }}
    {%- endif -%}
{%- endmacro %}

{#- A value from run_query as a SQL literal. -#}
{% macro dq_literal(value) -%}
    {%- if value is none -%}
        null
    {%- elif value is number -%}
        {{ value }}
    {%- else -%}
        '{{ value | string | replace("'", "''") }}'
    {%- endif -%}
{%- endmacro %}

{#- A share 0..1 as SQL text like '100.0%'. -#}
{% macro dq_percent(expression) -%}
    printf('%.1f%%', 100.0 * ({{ expression }}))
{%- endmacro %}

{#- The SQL (read_parquet(...)) a shop source reads, taken from the source's external_location
    without making the test depend on the source node. -#}
{% macro dq_landing_location(table) -%}
    {%- set nodes = graph.sources.values() | selectattr('source_name', 'equalto', 'shop')
        | selectattr('name', 'equalto', table) | list -%}
    {%- if nodes | length != 1 -%}
        {{ exceptions.raise_compiler_error("dq guard: no source shop." ~ table) }}
    {%- endif -%}
    {%- set meta = nodes[0].config.meta or nodes[0].meta -%}
    {{- meta['external_location'] | replace('{name}', table) -}}
{%- endmacro %}

{#- (a) At most var dq_max_quarantined_share of an entity's rows quarantined. Rows quarantined as
    after_as_of_date (and the implied base-currency fx row) are not counted: they are not bad, they are
    later than the run's as_of_date (a back-test with an old as_of_date must not trip the guard). -#}
{% test dq_max_quarantined_share(model, entity) %}
    {%- set max_share = var('dq_max_quarantined_share') | float -%}
    {%- set guard_sql -%}
        with

        checked as (

            select quarantine_reason
            from {{ model }}
            where source_row_number is not null
                and quarantine_reason is distinct from 'after_as_of_date'

        ),

        reasons as (

            select quarantine_reason, count(*) as row_count
            from checked
            where quarantine_reason is not null
            group by quarantine_reason

        ),

        counted as (

            select
                (select count(*) from checked) as checked_rows,
                coalesce((select sum(row_count) from reasons), 0) as quarantined_rows,
                (
                    select string_agg(quarantine_reason || ' ' || row_count, ', ' order by row_count desc, quarantine_reason)
                    from reasons
                ) as reasons

        )

        select
            '{{ entity }}' as entity,
            quarantined_rows,
            checked_rows,
            quarantined_rows / checked_rows as quarantined_share,
            {{ max_share }} as max_share,
            '{{ entity }} quarantined ' || {{ dq_percent('quarantined_rows / checked_rows') }}
                || ' > ' || {{ dq_percent(max_share) }} || ' (' || quarantined_rows || ' of ' || checked_rows
                || ' rows; ' || reasons || '; dq_max_quarantined_share)' as message

        from counted
        where checked_rows > 0
            and quarantined_rows > {{ max_share }} * checked_rows
    {%- endset -%}
    {{ dq_guard(guard_sql) }}
{% endtest %}

{#- (d) A column whose values mostly do not cast to the type staging gives it: of the rows with a
    value (not null, not blank), more than var dq_max_cast_failure_share fail the same try_cast the
    staging model does. The type is the staging view's column type; the values are read from the
    landing file itself (staging keeps only the cast result). A column the file already has in that
    type cannot fail and is not scanned (the usual case: the check costs a look at the file's schema). -#}
{% test dq_max_cast_failure_share(model, entity, column_names) %}
    {%- set max_share = var('dq_max_cast_failure_share') | float -%}
    {%- set checked = [] -%}
    {#- Built only when dbt runs tests: it reads the warehouse and the file's schema (dbt compile or
        docs generate must work without a landing folder). -#}
    {%- if execute and flags.WHICH in ('build', 'test', 'retry') -%}
        {%- set location = dq_landing_location(entity) -%}
        {%- set staged_types, landing_types = {}, {} -%}
        {%- for column in adapter.get_columns_in_relation(model) -%}
            {%- do staged_types.update({column.name | lower: column.data_type | upper}) -%}
        {%- endfor -%}
        {%- for row in run_query('describe select * from ' ~ location).rows -%}
            {%- do landing_types.update({row[0] | lower: row[1] | upper}) -%}
        {%- endfor -%}
        {%- for column_name in column_names -%}
            {%- set staged = staged_types[column_name | lower] -%}
            {%- set landed = landing_types.get(column_name | lower) -%}
            {%- if landed is not none and landed != staged -%}
                {%- if landed == 'VARCHAR' -%}
                    {%- set valued = 'nullif(trim("' ~ column_name ~ '"), \'\') is not null' -%}
                {%- else -%}
                    {%- set valued = '"' ~ column_name ~ '" is not null' -%}
                {%- endif -%}
                {%- do checked.append({'name': column_name, 'type': staged, 'valued': valued}) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if checked | length == 0 -%}
        -- nothing to scan: every checked column already has its staging type in the file, so no cast can
        -- fail (or dbt is not running tests: the query is built from the file's schema when it does)
        select 1 as nothing_failed from {{ model }} where false
    {%- else -%}
        {%- set guard_sql -%}
            with

            counted as (

                select
                    {% for column in checked -%}
                    count(*) filter (where {{ column.valued }}) as "{{ column.name }}__valued",
                    count(*) filter (
                        where {{ column.valued }} and try_cast("{{ column.name }}" as {{ column.type }}) is null
                    ) as "{{ column.name }}__failed",
                    any_value(cast("{{ column.name }}" as varchar)) filter (
                        where {{ column.valued }} and try_cast("{{ column.name }}" as {{ column.type }}) is null
                    ) as "{{ column.name }}__example"{% if not loop.last %},{% endif %}
                    {% endfor %}
                from {{ location }}

            ),

            unioned as (

                {% for column in checked -%}
                select
                    '{{ column.name }}' as column_name,
                    '{{ column.type }}' as data_type,
                    "{{ column.name }}__failed" as failed_rows,
                    "{{ column.name }}__valued" as valued_rows,
                    "{{ column.name }}__example" as failed_example
                from counted
                {% if not loop.last %}union all{% endif %}
                {% endfor %}

            )

            select
                '{{ entity }}' as entity,
                column_name,
                data_type,
                failed_rows,
                valued_rows,
                failed_rows / valued_rows as failed_share,
                {{ max_share }} as max_share,
                failed_example,
                '{{ entity }}.' || column_name || ' does not cast to ' || data_type || ' in '
                    || {{ dq_percent('failed_rows / valued_rows') }} || ' of its values > '
                    || {{ dq_percent(max_share) }} || ' (' || failed_rows || ' of ' || valued_rows
                    || ', e.g. ''' || failed_example || '''; dq_max_cast_failure_share)' as message

            from unioned
            where valued_rows > 0
                and failed_rows > {{ max_share }} * valued_rows
        {%- endset -%}
        {{ dq_guard(guard_sql) }}
    {%- endif -%}
{% endtest %}

{#- (c) An export with fewer than var dq_min_rows rows of this entity (default 1: an empty file). -#}
{% test dq_min_rows(model, entity) %}
    {%- set min_rows = var('dq_min_rows') | int -%}
    {%- set guard_sql -%}
        select
            '{{ entity }}' as entity,
            count(*) as row_count,
            {{ min_rows }} as min_rows,
            '{{ entity }} has ' || count(*) || ' rows in the export < ' || {{ min_rows }}
                || ' (dq_min_rows)' as message

        from {{ model }}
        having count(*) < {{ min_rows }}
    {%- endset -%}
    {{ dq_guard(guard_sql) }}
{% endtest %}

{#- (b) The entity's row count fell by more than var dq_max_row_drop_share against the last good build
    recorded in dq_export_history (appended by every build whose guards all passed). No recorded build
    yet (the first build of a warehouse): nothing to compare, the guard passes. The history table is
    looked up by name, not ref(): a ref would make this test wait for the history, which comes last. -#}
{% test dq_max_row_drop_share(model, entity) %}
    {%- set max_drop = var('dq_max_row_drop_share') | float -%}
    {%- set history = none -%}
    {%- if execute -%}
        {%- set node = graph.nodes.get('model.' ~ project_name ~ '.dq_export_history') -%}
        {%- if node -%}
            {%- set history = adapter.get_relation(
                database=node.database, schema=node.schema, identifier=node.alias) -%}
        {%- endif -%}
    {%- endif -%}
    {%- if history is none -%}
        select 1 as nothing_failed from {{ model }} where false
    {%- else -%}
        {%- set guard_sql -%}
            with

            current_build as (

                select count(*) as row_count from {{ model }}

            ),

            last_good as (

                select row_count, built_at, as_of_date
                from {{ history }}
                where entity = '{{ entity }}'
                order by built_at desc
                limit 1

            )

            select
                '{{ entity }}' as entity,
                current_build.row_count,
                last_good.row_count as last_good_row_count,
                last_good.built_at as last_good_built_at,
                1 - current_build.row_count / last_good.row_count as drop_share,
                {{ max_drop }} as max_drop_share,
                '{{ entity }} rows fell ' || {{ dq_percent('1 - current_build.row_count / last_good.row_count') }}
                    || ' > ' || {{ dq_percent(max_drop) }} || ' (' || current_build.row_count
                    || ' now, ' || last_good.row_count || ' at the last good build of '
                    || strftime(last_good.built_at, '%Y-%m-%d %H:%M') || ' UTC; dq_max_row_drop_share)'
                    as message

            from current_build
            cross join last_good
            where last_good.row_count > 0
                and current_build.row_count < (1 - {{ max_drop }}) * last_good.row_count
        {%- endset -%}
        {{ dq_guard(guard_sql) }}
    {%- endif -%}
{% endtest %}
