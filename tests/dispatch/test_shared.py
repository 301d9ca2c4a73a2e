"""SendGrid shared mode end to end: prepare + deliver through the official client to the local SendGrid
server, which applies each personalization's substitutions to what it records. What each recipient got
must be exactly the message's own rendering; only messages proven identical share a request."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from datetime import date
from pathlib import Path

from retain.channels.sendgrid import SendGridChannel
from retain.dispatch import DispatchSpec, MemberSource, Recipient, StepTemplates, deliver, prepare
from retain.dispatch.render import outgoing, render_message
from retain.dispatch.shared import MAX_PERSONALIZATION_BYTES
from retain.rendering import get_renderer
from retain.testing.sendgrid_server import SendGridServer
from tests.dispatch.conftest import NOON, member

KEY = "SG.test-key"
LOGICAL = date(2026, 6, 30)
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def links_for(row, recipient):
    """Per-member links with characters HTML must escape (``&``)."""
    mid = row["member_id"]
    return {
        "links": {
            "unsubscribe": f"https://shop.example.com/u?m={mid}&t=tok{mid}",
            "preferences": f"https://shop.example.com/p?m={mid}&x=1",
            "view_in_browser": f"https://shop.example.com/v/{mid}",
            "shop": "https://shop.example.com/",
        }
    }


def members_mix() -> dict[str, dict]:
    rows = {str(i): member(i) for i in range(1, 41)}
    rows["3"] = member(3, first_name="<script>alert(1)</script>")
    rows["4"] = member(4, first_name="Tom & Jerry", last_name="O'Neil")
    rows["5"] = member(5, first_name="磊", last_name="宋", locale="zh-CN", timezone="Asia/Shanghai")
    rows["6"] = member(6, first_name="静", locale="zh-CN", timezone="Asia/Shanghai")
    rows["7"] = member(7, first_name=None)
    rows["8"] = member(8, first_name=None, locale="zh-CN", timezone="Asia/Shanghai")
    rows["11"] = member(11, first_name=None)
    rows["9"] = member(9, first_name="Ann\u00a0 Double  Space")  # the subject folds whitespace: not shared
    rows["10"] = member(10, first_name="x-rt0-y")  # looks like a token: never substituted
    return rows


def expected(spec, rows, renderer):
    """Each delivery's own per-member rendering, as the per-message path would send it."""
    out = {}
    for mid, row in rows.items():
        rec = Recipient(mid, "win_back", "email", "win_back")
        msg = render_message(renderer, spec, rec, row, links_for)
        out[mid] = msg
    return out


def run(ledger, spec, rows, server, deliver_kw=None, **channel_kw):
    members = MemberSource.from_rows(rows)
    recipients = [Recipient(mid, "win_back", "email", "win_back") for mid in rows]
    report = prepare(ledger, spec, "shared", LOGICAL, recipients, members=members, now=NOON)
    channel = SendGridChannel(KEY, server.url, **channel_kw)
    try:
        result = deliver(
            ledger,
            spec,
            report.run,
            channels={"email": channel},
            members=members,
            context_for=links_for,
            worker_id="w",
            now=NOON,
            **(deliver_kw or {}),
        )
    finally:
        channel.close()
    return report, result


def by_member(server):
    return {r.to.split("@")[0].removeprefix("member"): r for r in server.received}


def test_shared_requests_deliver_exactly_each_members_own_rendering(ledger, caplog):
    caplog.set_level(logging.DEBUG)
    spec = DispatchSpec(campaign="win_back", steps={"win_back": StepTemplates(email="win_back")})
    rows = members_mix()
    with SendGridServer({KEY}) as server:
        _, result = run(ledger, spec, rows, server)
    assert result.counts["sent"] == len(rows)
    # no duplicates, no misses at the provider
    assert server.count_by("delivery_id") == Counter({k: 1 for k in server.count_by("delivery_id")})
    assert len(server.received) == len(rows)
    # shared: en-US with a name (33), zh-CN with a name (5, 6), en-US without (7, 11); alone: 8 (the
    # only zh-CN without a name), 9 (the subject folds its spaces), 10 (its name looks like a token)
    assert server.requests == 3 + 3, server.requests
    want = expected(spec, rows, get_renderer(spec.templates_dir))
    got = by_member(server)
    for mid, msg in want.items():
        assert (got[mid].subject, got[mid].text, got[mid].html) == (msg.subject, msg.text, msg.html), mid
        assert got[mid].headers["List-Unsubscribe"] == f"<{msg.unsubscribe}>"
    # escaped in HTML, raw in text and subject
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in got["3"].html and "<script>" not in got["3"].html
    assert "Tom &amp; Jerry" in got["4"].html and "Tom & Jerry" in got["4"].subject
    assert "磊" in got["5"].subject
    assert "Hi there" in got["7"].text
    # the member whose value looks like a token went alone, and still got exactly its own rendering
    assert got["10"].html == want["10"].html
    # the ledger stores each message's own content hash
    hashes = {r["member_id"]: r["content_hash"] for r in _ledger_rows(ledger)}
    assert all(hashes[mid] == msg.content_hash for mid, msg in want.items())
    text = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "dispatch shared mode" in text
    for row in rows.values():
        assert row["email"] not in text


def test_a_template_that_transforms_a_member_value_goes_one_request_per_message(ledger, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    shout = templates / "email" / "shout"
    shutil.copytree(templates / "email" / "win_back", shout)
    html = (shout / "html.j2").read_text()
    (shout / "html.j2").write_text(html.replace("member.first_name or", "member.first_name|upper or"))
    spec = DispatchSpec(
        campaign="shout", steps={"win_back": StepTemplates(email="shout")}, templates_dir=str(templates)
    )
    rows = {str(i): member(i) for i in range(1, 9)}
    members = MemberSource.from_rows(rows)
    recipients = [Recipient(mid, "win_back", "email", "shout") for mid in rows]
    with SendGridServer({KEY}) as server:
        report = prepare(ledger, spec, "shout", LOGICAL, recipients, members=members, now=NOON)
        channel = SendGridChannel(KEY, server.url)
        deliver(
            ledger,
            spec,
            report.run,
            channels={"email": channel},
            members=members,
            context_for=links_for,
            worker_id="w",
            now=NOON,
        )
        channel.close()
    assert server.requests == len(rows)  # |upper of a token is not the member's value upper-cased
    got = by_member(server)
    assert f"Hi {'ANN1'}," in got["1"].html and "-RT" not in got["1"].html


def test_a_refused_shared_request_falls_back_to_one_request_per_message(ledger):
    spec = DispatchSpec(campaign="win_back", steps={"win_back": StepTemplates(email="win_back")})
    rows = {str(i): member(i) for i in range(1, 11)}
    renderer = get_renderer(spec.templates_dir)
    one = outgoing(
        spec, 1, "k", "member1@example.com", expected(spec, {"1": rows["1"]}, renderer)["1"], False
    )
    single_size = len(one.html) + len(one.text) + 2000
    # one message fits, ten personalizations of the same content do not: 413, then one by one
    with SendGridServer({KEY}, max_body_bytes=single_size + 1500) as server:
        _, result = run(ledger, spec, rows, server)
    assert result.counts["sent"] == len(rows)
    assert server.requests == 1 + len(rows)
    assert sorted(server.count_by("delivery_id").values()) == [1] * len(rows)
    want = expected(spec, rows, renderer)
    for mid, rec in by_member(server).items():
        assert rec.html == want[mid].html and rec.subject == want[mid].subject


def test_a_member_over_the_substitution_limit_goes_alone(ledger):
    spec = DispatchSpec(campaign="win_back", steps={"win_back": StepTemplates(email="win_back")})
    rows = {str(i): member(i) for i in range(1, 6)}
    rows["2"] = member(2, first_name="N" * (MAX_PERSONALIZATION_BYTES // 2))
    with SendGridServer({KEY}) as server:
        _, result = run(ledger, spec, rows, server)
    assert result.counts["sent"] == 5
    assert server.requests == 2  # four shared, the long name alone
    assert by_member(server)["2"].html.count("N" * 100) >= 1


def _ledger_rows(ledger):
    from sqlalchemy import text

    with ledger.engine.connect() as con:
        return [dict(r._mapping) for r in con.execute(text("select member_id, content_hash from deliveries"))]


def test_a_message_the_provider_did_not_take_is_retried_alone(ledger):
    spec = DispatchSpec(campaign="win_back", steps={"win_back": StepTemplates(email="win_back")})
    rows = {str(i): member(i) for i in range(1, 7)}
    with SendGridServer({KEY}, error_rate=1.0) as server:
        report, first = run(
            ledger, spec, rows, server, {"retry_base_s": 1.0, "max_wait_s": 0}, max_attempts=1
        )
        assert first.counts["retried"] == 6 and server.requests == 1 and not server.received
        server.set_faults(error_rate=0.0)
        server.clear()
        channel = SendGridChannel(KEY, server.url)
        # the retry's backoff (1-1.25 s, long enough that a loaded machine cannot make it due within the first
        # call) is waited for by this call: max_wait_s defaults to a minute
        second = deliver(
            ledger,
            spec,
            report.run,
            channels={"email": channel},
            members=MemberSource.from_rows(rows),
            context_for=links_for,
            worker_id="w",
            now=NOON,
        )
        channel.close()
    assert second.counts["sent"] == 6
    assert server.requests == 6  # one request per message on the second attempt
    assert sorted(server.count_by("delivery_id").values()) == [1] * 6
