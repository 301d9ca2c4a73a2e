{#-
    Statistics of campaign_performance and journey_performance (docs/measurement.md). DuckDB has no normal
    CDF, so the complementary error function is computed with the Chebyshev fit of Numerical Recipes
    (erfcc, W. H. Press et al., 2nd ed., section 6.2): fractional error below 1.2e-7 for every x, so a
    p-value is accurate to better than 1e-6 absolutely and keeps its relative accuracy in the tails
    (tests/dbt/test_measurement.py checks it against Python's math.erfc).
-#}

{#- erfc(x) for any real x. -#}
{% macro erfc(x) -%}
    (
        case when ({{ x }}) >= 0 then 0.0 else 2.0 end
        + case when ({{ x }}) >= 0 then 1.0 else -1.0 end
        * {{ _erfc_abs('abs(' ~ x ~ ')') }}
    )
{%- endmacro %}

{%- macro _erfc_abs(a) -%}
    (
        (1.0 / (1.0 + 0.5 * {{ a }}))
        * exp(
            -({{ a }}) * ({{ a }}) - 1.26551223
            + (1.0 / (1.0 + 0.5 * {{ a }})) * (1.00002368
            + (1.0 / (1.0 + 0.5 * {{ a }})) * (0.37409196
            + (1.0 / (1.0 + 0.5 * {{ a }})) * (0.09678418
            + (1.0 / (1.0 + 0.5 * {{ a }})) * (-0.18628806
            + (1.0 / (1.0 + 0.5 * {{ a }})) * (0.27886807
            + (1.0 / (1.0 + 0.5 * {{ a }})) * (-1.13520398
            + (1.0 / (1.0 + 0.5 * {{ a }})) * (1.48851587
            + (1.0 / (1.0 + 0.5 * {{ a }})) * (-0.82215223
            + (1.0 / (1.0 + 0.5 * {{ a }})) * 0.17087277))))))))
        )
    )
{%- endmacro %}

{#- Standard normal CDF: Phi(z) = erfc(-z / sqrt(2)) / 2. -#}
{% macro normal_cdf(z) -%}
    (0.5 * {{ erfc('-(' ~ z ~ ') / sqrt(2.0)') }})
{%- endmacro %}

{#- Two-sided p-value of a standard normal statistic: 2 (1 - Phi(|z|)) = erfc(|z| / sqrt(2)). -#}
{% macro two_sided_p_value(z) -%}
    {{ erfc('abs(' ~ z ~ ') / sqrt(2.0)') }}
{%- endmacro %}

{#-
    Lift of a treated arm (x1 conversions of n1 members) over its holdout (x0 of n0), as select-list
    columns. Rounded to 6 decimals (z to 4). Null where undefined (no holdout, n = 0, a zero rate for the
    relative lift, all or nothing converted for the z-test).
      p1 = x1 / n1, p0 = x0 / n0, z975 = 1.959964 (95%, two-sided)
      lift_abs = p1 - p0, CI = lift_abs -/+ z975 * sqrt(p1 (1 - p1) / n1 + p0 (1 - p0) / n0)   (unpooled SE)
      lift_rel = p1 / p0 - 1, CI = exp(ln(p1 / p0) -/+ z975 * sqrt((1 - p1) / x1 + (1 - p0) / x0)) - 1
                 (delta method on the log of the rate ratio)
      z = (p1 - p0) / sqrt(p (1 - p) (1 / n1 + 1 / n0)), p = (x1 + x0) / (n1 + n0)   (pooled SE)
      p_value = erfc(|z| / sqrt 2) (two-sided), is_significant = p_value < 0.05
-#}
{% macro lift_columns(x1, n1, x0, n0) -%}
    {%- set p1 = '(' ~ x1 ~ ')::double / nullif(' ~ n1 ~ ', 0)' -%}
    {%- set p0 = '(' ~ x0 ~ ')::double / nullif(' ~ n0 ~ ', 0)' -%}
    {%- set pooled = '((' ~ x1 ~ ') + (' ~ x0 ~ '))::double / nullif((' ~ n1 ~ ') + (' ~ n0 ~ '), 0)' -%}
    {%- set se_unpooled = 'sqrt((' ~ p1 ~ ') * (1 - ' ~ p1 ~ ') / (' ~ n1 ~ ') + (' ~ p0 ~ ') * (1 - ' ~ p0 ~ ') / (' ~ n0 ~ '))' -%}
    {%- set se_log = 'sqrt((1 - ' ~ p1 ~ ') / nullif(' ~ x1 ~ ', 0) + (1 - ' ~ p0 ~ ') / nullif(' ~ x0 ~ ', 0))' -%}
    {%- set z = '(' ~ p1 ~ ' - ' ~ p0 ~ ') / nullif(sqrt((' ~ pooled ~ ') * (1 - ' ~ pooled ~ ') * (1.0 / nullif(' ~ n1 ~ ', 0) + 1.0 / nullif(' ~ n0 ~ ', 0))), 0)' -%}
    {%- set z975 = '1.959964' -%}
    round({{ p1 }} - {{ p0 }}, 6) as lift_abs,
    round({{ p1 }} - {{ p0 }} - {{ z975 }} * {{ se_unpooled }}, 6) as lift_abs_ci_low,
    round({{ p1 }} - {{ p0 }} + {{ z975 }} * {{ se_unpooled }}, 6) as lift_abs_ci_high,
    round({{ p1 }} / nullif({{ p0 }}, 0) - 1, 6) as lift_rel,
    round(exp(ln(nullif({{ p1 }}, 0) / nullif({{ p0 }}, 0)) - {{ z975 }} * {{ se_log }}) - 1, 6) as lift_rel_ci_low,
    round(exp(ln(nullif({{ p1 }}, 0) / nullif({{ p0 }}, 0)) + {{ z975 }} * {{ se_log }}) - 1, 6) as lift_rel_ci_high,
    round({{ z }}, 4) as z_score,
    round({{ two_sided_p_value(z) }}, 6) as p_value,
    {{ two_sided_p_value(z) }} < 0.05 as is_significant
{%- endmacro %}

{#-
    Aggregates of one arm (an audience variant, or the holdout) in a select grouped by the arm, over rows
    with the columns of int_campaign_members_attributed, each row one unit of the audience: a member in
    campaign_performance, an entry in journey_performance. These are the arm columns
    arm_vs_holdout_columns reads; message counts are messages, audience and converted are units.
-#}
{% macro arm_measures() -%}
    count(*) as audience,
    sum(messages_sent)::bigint as sent,
    sum(messages_delivered)::bigint as delivered,
    sum(messages_bounced)::bigint as bounced,
    sum(messages_opened)::bigint as opened,
    sum(messages_clicked)::bigint as clicked,
    sum(messages_unsubscribed)::bigint as unsubscribed,
    count(*) filter (where is_converted) as converted,
    sum(revenue_base)::decimal(18, 2) as revenue_base,
    max(attribution_window_days) as attribution_window_days,
    bool_and(is_attribution_complete) as is_attribution_complete
{%- endmacro %}

{#-
    The measured columns of a treated arm against its holdout, in the order campaign_performance and
    journey_performance both expose them: the arm's audience, message counts, conversions and revenue, its
    conversion_rate, the holdout's audience, conversions and rate, the lift_columns statistics, and the
    attribution window. arm and holdout are the aliases of the joined arm and holdout relations (the holdout
    needs only audience and converted); on an unmatched arm (the holdout row itself, a run without a
    holdout) every holdout and lift column is null.
-#}
{% macro arm_vs_holdout_columns(arm, holdout) -%}
    {{ arm }}.audience,
    {{ arm }}.sent,
    {{ arm }}.delivered,
    {{ arm }}.bounced,
    {{ arm }}.opened,
    {{ arm }}.clicked,
    {{ arm }}.unsubscribed,
    {{ arm }}.converted,
    {{ arm }}.revenue_base,
    round({{ arm }}.converted / {{ arm }}.audience, 6) as conversion_rate,
    {{ holdout }}.audience as holdout_audience,
    {{ holdout }}.converted as holdout_converted,
    round({{ holdout }}.converted / {{ holdout }}.audience, 6) as holdout_conversion_rate,
    {{ lift_columns(arm ~ '.converted', arm ~ '.audience', holdout ~ '.converted', holdout ~ '.audience') }},
    {{ arm }}.attribution_window_days,
    {{ arm }}.is_attribution_complete
{%- endmacro %}

{#- The measurement_excluded_skip_reasons var as a SQL predicate on skip_reason. -#}
{% macro measured_skip_reason(column) -%}
    {%- set excluded = var('measurement_excluded_skip_reasons', []) or [] -%}
    {%- if excluded | length == 0 -%}
        true
    {%- else -%}
        ({{ column }} is null or {{ column }} not in (
            {%- for reason in excluded -%}
                '{{ reason | replace("'", "''") }}'{{ ", " if not loop.last }}
            {%- endfor -%}
        ))
    {%- endif -%}
{%- endmacro %}
