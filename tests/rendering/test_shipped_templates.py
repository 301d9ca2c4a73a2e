"""Every template shipped under templates/ renders for every shipped locale against the sample members.

The list is discovered at collection time, so new journeys and locales are covered as they land.
"""

from __future__ import annotations

import pytest

from retain import config
from retain.rendering.context import SAMPLE_MEMBERS
from retain.rendering.validation import check_templates, discover

SHIPPED = config.project_root() / "templates"
EMAILS, SMS = discover(SHIPPED) if SHIPPED.is_dir() else ([], [])


@pytest.fixture(scope="module")
def report():
    return check_templates(SHIPPED, members=SAMPLE_MEMBERS)


def test_shipped_template_files_follow_the_contract(report):
    assert report.static_problems == [], "\n".join(map(str, report.static_problems))


@pytest.mark.parametrize(("channel", "name"), [("email", n) for n in EMAILS] + [("sms", n) for n in SMS])
def test_shipped_template_renders_for_every_shipped_locale(report, channel, name):
    result = next(r for r in report.results if (r.channel, r.name) == (channel, name))
    assert result.problems == [], "\n".join(map(str, result.problems))
    assert result.renders > 0
