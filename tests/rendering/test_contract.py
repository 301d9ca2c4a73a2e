"""Using an undeclared or missing variable is an error at validation time, never at send time."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from retain.cli import app
from retain.rendering import TemplateValidationError, check_templates, validate_templates

from .conftest import FIXTURE_TEMPLATES

SMS_OK = "Hi {{ member.first_name }}. Reply STOP to opt out"


def test_fixture_templates_pass_validation():
    report = validate_templates(FIXTURE_TEMPLATES)
    assert report.ok
    assert {(r.channel, r.name) for r in report.results} == {("email", "welcome"), ("sms", "welcome")}


def test_unknown_member_field_on_an_untaken_branch_is_caught_with_line_and_variable(make_templates):
    root = make_templates(
        {
            "sms/promo.j2": "Hi {{ member.first_name }}.\n"
            "{% if false %}{{ member.nonexistent }}{% endif %}\nReply STOP to opt out"
        }
    )
    problems = check_templates(root).problems
    assert [(p.template, p.line, p.variable) for p in problems] == [("sms/promo.j2", 2, "member.nonexistent")]


def test_undeclared_variable_is_caught_with_line(make_templates):
    root = make_templates(
        {"sms/promo.j2": "Hi {{ member.first_name }}\n{{ discount_code }} Reply STOP to opt out"}
    )
    problems = check_templates(root).problems
    assert ("sms/promo.j2", 2, "discount_code") in [(p.template, p.line, p.variable) for p in problems]


def test_product_loop_items_are_checked_against_the_product_fields(make_templates):
    root = make_templates(
        {
            "sms/promo.j2": "{% for p in products[:2] %}{{ p.name }} {{ p.sku }}{% endfor %} "
            "Reply STOP to opt out"
        }
    )
    problems = check_templates(root).problems
    assert [(p.line, p.variable) for p in problems] == [(1, "p.sku")]


def test_offer_used_without_a_guard_fails_on_the_no_offer_sample(make_templates):
    root = make_templates({"sms/promo.j2": "Code {{ offer.code }}. Reply STOP to opt out"})
    problems = check_templates(root).problems
    assert problems and problems[0].template == "sms/promo.j2" and problems[0].line == 1
    assert problems[0].variable == "code" and "without offer" in problems[0].sample


def test_syntax_error_is_reported_with_its_line(make_templates):
    root = make_templates({"sms/promo.j2": "Hi\n{% if member.first_name %}oops\nReply STOP to opt out"})
    problems = check_templates(root).problems
    assert problems[0].template == "sms/promo.j2" and "syntax error" in problems[0].message


def test_missing_text_part_fails(make_templates):
    root = make_templates({"email/promo/subject.j2": "Hi", "email/promo/html.j2": "<p>Hi</p>"})
    problems = check_templates(root).problems
    assert any("text.j2" in p.message for p in problems)


def test_validate_templates_raises_before_any_send(make_templates):
    root = make_templates({"sms/ok.j2": SMS_OK, "sms/broken.j2": "{{ member.nope }} Reply STOP to opt out"})
    with pytest.raises(TemplateValidationError) as caught:
        validate_templates(root)
    assert "sms/broken.j2:1 [member.nope]" in str(caught.value)


def test_marketing_sms_without_opt_out_or_too_long_fails(make_templates):
    root = make_templates(
        {
            "sms/no_optout.j2": "Hi {{ member.first_name }}, 20% off today!",
            "sms/too_long.j2": "x" * 400 + " Reply STOP to opt out",
            "locales/zh-CN/sms/wrong_lang.j2": "你好 Reply STOP to opt out",
            "sms/wrong_lang.j2": SMS_OK,
        }
    )
    messages = " | ".join(p.message for p in check_templates(root).problems)
    assert "no_optout" in messages and "opt-out" in messages
    assert "too_long" in messages and "segments" in messages
    assert "回复TD退订" in messages


def test_cli_validate_exits_1_with_template_line_and_variable(make_templates, monkeypatch, tmp_path):
    root = make_templates({"sms/broken.j2": "Hi\n{{ member.nope }} Reply STOP to opt out"})
    monkeypatch.setenv("RETAIN_WAREHOUSE", str(tmp_path / "none.duckdb"))
    result = CliRunner().invoke(app, ["templates", "validate", "--templates-dir", str(root)])
    assert result.exit_code == 1
    assert "sms/broken.j2:2 [member.nope]" in result.output


def test_cli_validate_exits_0_with_a_table(monkeypatch, tmp_path):
    monkeypatch.setenv("RETAIN_TEMPLATES_DIR", str(FIXTURE_TEMPLATES))
    monkeypatch.setenv("RETAIN_WAREHOUSE", str(tmp_path / "none.duckdb"))
    result = CliRunner().invoke(app, ["templates", "validate"])
    assert result.exit_code == 0, result.output
    assert (
        "email/welcome" in result.output
        and "sms/welcome" in result.output
        and "samples: fixtures" in result.output
    )


def test_a_partial_may_use_the_loop_variable_of_its_includer_but_only_its_fields(make_templates):
    card = "<p>{{ product.name }} {{ product.price | money(product.currency) }}</p>"
    root = make_templates(
        {
            "partials/card.html.j2": card,
            "partials/bad_card.html.j2": "<p>{{ product.sku }}</p>",
            "email/promo/subject.j2": "Hi",
            "email/promo/html.j2": '{% for product in products %}{% include "partials/card.html.j2" %}'
            "{% endfor %}",
            "email/promo/text.j2": "Hi {{ widget }}",
        }
    )
    problems = [(p.template, p.variable) for p in check_templates(root).problems]
    assert problems == [("email/promo/text.j2", "widget"), ("partials/bad_card.html.j2", "product.sku")]
