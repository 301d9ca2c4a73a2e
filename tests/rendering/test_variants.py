"""A/B variants in the template contract: ``campaign.variant`` reaches the template, and validation renders
each variant a template branches on, so a mistake on variant b's branch fails before any send."""

from __future__ import annotations

from retain.rendering import Campaign, Renderer, build_context, check_templates
from retain.rendering.context import CONTRACT

from .conftest import full_context, member

LAYOUT = {
    "layouts/base_email.html.j2": "<html><body>{% block content %}{% endblock %}"
    '<a href="{{ links.unsubscribe }}">unsubscribe</a></body></html>',
    "layouts/base_email.text.j2": "{% block content %}{% endblock %}\nUnsubscribe: {{ links.unsubscribe }}",
}
SUBJECT = (
    '{% if campaign.variant == "b" %}Last days{% else %}Spring is here{% endif %}, {{ member.first_name }}'
)


def _email(subject: str = SUBJECT, body: str = "<p>Hi</p>") -> dict[str, str]:
    return {
        **LAYOUT,
        "email/sale/subject.j2": subject,
        "email/sale/html.j2": '{% extends "layouts/base_email.html.j2" %}{% block content %}'
        + body
        + "{% endblock %}",
        "email/sale/text.j2": '{% extends "layouts/base_email.text.j2" %}{% block content %}Hi{% endblock %}',
    }


def test_the_variant_is_part_of_the_contract_and_of_the_context():
    assert "variant" in CONTRACT["campaign"]
    assert build_context(member(), Campaign("spring", variant="b"))["campaign"]["variant"] == "b"
    # A campaign without variants: an empty string, so ``campaign.variant == "b"`` is simply false.
    assert build_context(member(), Campaign("spring"))["campaign"]["variant"] == ""


def test_a_template_renders_a_different_subject_per_variant(make_templates):
    renderer = Renderer(make_templates(_email()))
    subjects = {}
    for variant in ("a", "b", ""):
        campaign = Campaign("spring", variant=variant)
        subjects[variant] = renderer.render_email("sale", full_context(member(), campaign), campaign).subject
    assert subjects == {"a": "Spring is here, Emma", "b": "Last days, Emma", "": "Spring is here, Emma"}


def test_validation_renders_the_variant_branch_a_template_declares(make_templates):
    # Unguarded offer.code only on variant b's branch: no sample without a variant ever takes it.
    root = make_templates(_email(body='{% if campaign.variant == "b" %}<p>{{ offer.code }}</p>{% endif %}'))
    report = check_templates(root, members=[member()])
    assert not report.ok
    problem = next(p for p in report.problems if p.sample)
    assert problem.template == "email/sale/html.j2" and problem.line == 1
    assert "variant b" in problem.sample and "without offer" in problem.sample


def test_validation_renders_variants_declared_by_the_caller(make_templates):
    # The branch compares a local name, so only the campaign's declared variants reveal it.
    body = '{% set arm = campaign.variant %}{% if arm == "c" %}<p>{{ offer.code }}</p>{% endif %}'
    root = make_templates(_email(body=body))
    assert check_templates(root, members=[member()]).ok
    report = check_templates(root, members=[member()], variants={("email", "sale"): ["c"]})
    assert [p.template for p in report.problems] == ["email/sale/html.j2"]
    assert "variant c" in report.problems[0].sample


def test_an_unknown_variable_used_only_by_a_variant_is_caught(make_templates):
    subject = (
        '{% if campaign.variant == "b" %}Ends {{ campaign.deadline }}{{ countdown }}{% else %}Hi{% endif %}'
    )
    report = check_templates(make_templates(_email(subject=subject)), members=[member()])
    found = {(p.template, p.variable) for p in report.problems}
    assert ("email/sale/subject.j2", "campaign.deadline") in found
    assert ("email/sale/subject.j2", "countdown") in found


def test_each_variant_renders_for_every_sample(make_templates):
    root = make_templates(_email())
    plain = check_templates(root, members=[member()], variants={})
    with_ab = check_templates(root, members=[member()], variants={("email", "sale"): ["a"]})
    # The subject branches on "b"; declaring "a" adds a third pass: none, a, b.
    assert plain.ok and with_ab.ok
    assert with_ab.results[0].renders == plain.results[0].renders * 3 // 2
