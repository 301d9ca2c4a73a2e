"""Templates are untrusted: no way from a template to Python internals, at render or validation time."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from retain.rendering import Renderer, check_templates

from .conftest import full_context, member

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ member.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ member.items.__self__ }}",
    "{{ (lipsum).__globals__['os'] }}",
    "{{ ''|attr('__class__') }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escape_is_refused_when_rendering(source, make_templates, campaign):
    root = make_templates({"sms/evil.j2": source + " Reply STOP to opt out"})
    renderer = Renderer(root)
    with pytest.raises((SecurityError, UndefinedError)):
        renderer.render_sms("evil", full_context(member(), campaign), campaign)


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escape_fails_validation(source, make_templates):
    root = make_templates({"sms/evil.j2": source + " Reply STOP to opt out"})
    report = check_templates(root)
    assert not report.ok
    assert all(p.template.startswith("sms/evil") for p in report.problems)


def test_private_attribute_is_flagged_statically_even_on_a_branch_never_taken(make_templates):
    root = make_templates(
        {"sms/evil.j2": "{% if false %}{{ member.__class__ }}{% endif %}Reply STOP to opt out"}
    )
    problems = check_templates(root).problems
    assert [(p.template, p.line, p.variable) for p in problems] == [("sms/evil.j2", 1, "__class__")]
