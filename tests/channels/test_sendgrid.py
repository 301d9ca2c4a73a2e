"""The SendGrid channel through the official client against the local SendGrid server."""

from __future__ import annotations

import json
import time

import pytest

from retain.channels import OutgoingEmail, channel_for
from retain.channels.sendgrid import SendGridChannel, SharedContent, SharedRecipient
from retain.testing import SendGridServer
from retain.testing.faults import Outcome

KEY = "SG.test-key"


def message(i: int, *, to: str | None = None, **kw) -> OutgoingEmail:
    values = dict(
        delivery_id=i,
        campaign="win_back",
        to=to or f"member{i}@example.com",
        subject=f"Hello {i}",
        html=f"<p>Hello {i}</p>",
        text=f"Hello {i}",
        from_email="news@shop.example",
        from_name="Shop",
        custom_args={"delivery_id": str(i), "campaign_id": "win_back"},
    )
    values.update(kw)
    return OutgoingEmail(**values)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sg():
    with SendGridServer(api_keys={KEY}) as server:
        yield server


def channel(server: SendGridServer, **kw) -> tuple[SendGridChannel, Sleeps]:
    sleeps = Sleeps()
    options = dict(timeout_s=2.0, concurrency=4, sleep=sleeps, lookup_settle_s=0.0)
    options.update(kw)
    return SendGridChannel(KEY, server.url, **options), sleeps


def test_accepted_message_is_sent_with_the_message_id(sg, assert_no_address_logged):
    ch, _ = channel(sg)
    [outcome] = ch.send_batch([message(1)])
    [record] = sg.received
    assert outcome.status == "sent" and outcome.provider == "sendgrid"
    assert outcome.provider_message_id == record.message_id
    assert record.custom_args == {"delivery_id": "1", "campaign_id": "win_back"}
    assert record.subject == "Hello 1"
    assert_no_address_logged("member1@example.com")


def test_validation_error_fails_with_the_provider_message_and_is_not_retried(sg, assert_no_address_logged):
    ch, sleeps = channel(sg)
    [outcome] = ch.send_batch([message(2, to="not-an-address")])
    assert outcome.status == "failed"
    assert (
        "Does not contain a valid address" in outcome.error
        and "personalizations.0.to.0.email" in outcome.error
    )
    assert sg.requests == 1 and sleeps == [] and sg.received == []
    assert_no_address_logged("not-an-address")


def test_provider_message_quoting_an_address_is_redacted(sg):
    ch, _ = channel(sg)
    [outcome] = ch.send_batch([message(3, from_email="bad-sender@", to="x@example.com")])
    assert outcome.status == "failed" and "@" not in outcome.error.replace("<email>", "")


@pytest.mark.parametrize("knob", ["error_rate", "throttle_rate"])
def test_server_errors_until_attempts_run_out_are_a_retry(sg, knob):
    ch, sleeps = channel(sg)
    sg.set_faults(**{knob: 1.0})
    [outcome] = ch.send_batch([message(4)])
    assert outcome.status == "retry" and sg.received == []
    assert sg.requests == ch.max_attempts and len(sleeps) == ch.max_attempts - 1


@pytest.mark.parametrize("knob", ["error_rate", "throttle_rate"])
def test_server_error_then_success_is_sent_once(sg, knob):
    sg.set_faults(**{knob: 1.0})
    waits = []

    def recover(seconds: float) -> None:  # the provider recovers while we back off
        waits.append(seconds)
        sg.set_faults(**{knob: 0.0})

    ch, _ = channel(sg, sleep=recover)
    [outcome] = ch.send_batch([message(4)])
    assert outcome.status == "sent" and len(waits) == 1
    assert sg.requests == 2 and sg.count_by("delivery_id") == {"4": 1}


def test_mixed_faults_end_sent_once_or_retry(sg):
    ch, _ = channel(sg)
    sg.set_faults(error_rate=0.3, throttle_rate=0.2, seed=3)
    outcomes = ch.send_batch([message(i) for i in range(10, 60)])
    assert {o.status for o in outcomes} <= {"sent", "retry"}
    sent = {str(o.delivery_id) for o in outcomes if o.status == "sent"}
    assert set(sg.count_by("delivery_id")) == sent and sg.duplicates("delivery_id") == {}
    assert len(sent) >= 40


def test_backoff_grows_exponentially_with_jitter(sg):
    ch, sleeps = channel(sg, max_attempts=5, backoff_base_s=1.0, backoff_max_s=100.0)
    sg.set_faults(error_rate=1.0)
    ch.send_batch([message(5)])
    assert len(sleeps) == 4
    for attempt, slept in enumerate(sleeps, start=1):
        assert 2 ** (attempt - 1) / 2 <= slept <= 2 ** (attempt - 1)


def test_429_waits_for_the_rate_limit_reset(sg):
    now = time.time()
    ch, sleeps = channel(sg, clock=lambda: now)
    sg.set_faults(throttle_rate=1.0)
    [outcome] = ch.send_batch([message(6)])
    # the server's X-RateLimit-Reset is one second ahead (epoch seconds, rounded down)
    assert sleeps and all(0.0 <= s <= 1.0 for s in sleeps)
    assert outcome.status == "retry" and outcome.retry_after is not None
    assert "HTTP 429" in outcome.error


def test_retry_after_header_is_honoured():
    c = SendGridChannel(KEY, "http://127.0.0.1:9", sleep=Sleeps())
    assert c._wait_from({"Retry-After": "7"}) == 7.0
    assert c._wait_from({"X-RateLimit-Reset": str(int(time.time()) + 30)}) == pytest.approx(30, abs=1.5)


def test_long_rate_limit_wait_is_handed_to_the_dispatcher(sg, monkeypatch):
    now = time.time()
    ch, sleeps = channel(sg, clock=lambda: now - 120, max_wait_s=60)  # reset looks 2 minutes away
    sg.set_faults(throttle_rate=1.0)
    [outcome] = ch.send_batch([message(7)])
    assert outcome.status == "retry" and outcome.retry_after >= 60 and sleeps == [] and sg.requests == 1


def test_timeout_after_accept_is_found_by_lookup_and_not_resent(sg):
    ch, _ = channel(sg, timeout_s=0.3)
    sg.set_faults(timeout_rate=1.0, timeout_s=1.0, timeout_after_accept=True)
    [outcome] = ch.send_batch([message(8)])
    [record] = sg.received
    assert outcome.status == "sent" and outcome.provider_message_id == record.message_id
    assert sg.requests == 2  # the send and the activity lookup, no second send
    assert sg.duplicates("delivery_id") == {}


def test_timeout_before_accept_is_retried_only_once_provably_absent(sg):
    sg.set_faults(timeout_rate=1.0, timeout_s=1.0, timeout_after_accept=False)
    settled, _ = channel(sg, timeout_s=0.3, lookup_settle_s=0.0)
    assert settled.send_batch([message(9)])[0].status == "retry"
    early, _ = channel(sg, timeout_s=0.3, lookup_settle_s=300.0)
    [outcome] = early.send_batch([message(9)])
    assert outcome.status == "in_doubt" and "not yet in the activity feed" in outcome.error
    assert sg.received == []


def test_timeout_with_failing_lookup_is_in_doubt():
    with SendGridServer(api_keys={KEY}, activity_api=False) as sg:
        ch, _ = channel(sg, timeout_s=0.3)
        sg.set_faults(timeout_rate=1.0, timeout_s=1.0)
        [outcome] = ch.send_batch([message(10)])
        assert outcome.status == "in_doubt" and "lookup failed" in outcome.error
        assert len(sg.received) == 1  # it was accepted: a blind re-send would have doubled it


def test_lookup_by_delivery_id(sg):
    ch, _ = channel(sg)
    ch.send_batch([message(21), message(22)])
    found = ch.lookup(22)
    assert found.found
    assert found.provider_message_id in {
        r.message_id for r in sg.received if r.custom_args["delivery_id"] == "22"
    }
    assert ch.lookup(23).found is False


def test_connection_refused_is_retried_then_retry():
    ch = SendGridChannel(KEY, "http://127.0.0.1:9", sleep=Sleeps(), max_attempts=2)
    [outcome] = ch.send_batch([message(11)])
    assert outcome.status == "retry" and "connection error" in outcome.error


def test_identical_content_goes_out_in_one_request_of_personalizations(sg):
    ch, _ = channel(sg)
    same = dict(subject="Sale", html="<p>Sale</p>", text="Sale")
    batch = [message(i, **same) for i in range(100, 150)] + [message(200)]
    outcomes = ch.send_batch(batch)
    assert [o.delivery_id for o in outcomes] == [m.delivery_id for m in batch]
    assert all(o.status == "sent" for o in outcomes)
    assert sg.requests == 2
    assert {r.custom_args["delivery_id"] for r in sg.received} == {str(m.delivery_id) for m in batch}


def test_one_bad_address_in_a_shared_batch_fails_alone(sg):
    ch, _ = channel(sg)
    same = dict(subject="Sale", html="<p>Sale</p>", text="Sale")
    batch = [message(i, **same) for i in range(1, 6)] + [message(6, to="broken", **same)]
    outcomes = ch.send_batch(batch)
    assert [o.status for o in outcomes] == ["sent"] * 5 + ["failed"]
    assert sg.duplicates("delivery_id") == {} and len(sg.received) == 5


def test_same_address_twice_is_split_into_two_requests(sg):
    ch, _ = channel(sg)
    same = dict(subject="Sale", html="<p>Sale</p>", text="Sale")
    outcomes = ch.send_batch(
        [message(1, to="ann@example.com", **same), message(2, to="ANN@example.com", **same)]
    )
    assert [o.status for o in outcomes] == ["sent", "sent"] and sg.requests == 2


def test_shared_content_with_substitutions(sg):
    ch, _ = channel(sg)
    content = SharedContent(
        "birthday", "Happy birthday -name-", "<p>-name-</p>", "-name-", "news@shop.example"
    )
    recipients = [
        SharedRecipient(i, f"m{i}@example.com", {"-name-": f"Member {i}"}, {"delivery_id": str(i)})
        for i in range(1, 2501)
    ]
    outcomes = ch.send_shared(content, recipients)
    assert len(outcomes) == 2500 and {o.status for o in outcomes} == {"sent"}
    assert sg.requests == 3  # 1,000 + 1,000 + 500 personalizations
    subjects = {r.custom_args["delivery_id"]: r.subject for r in sg.received}
    assert subjects["42"] == "Happy birthday Member 42"
    assert {r.custom_args["campaign_id"] for r in sg.received} == {"birthday"}


def test_sandbox_mode_from_the_connection(sg, monkeypatch):
    conn = {"conn_type": "sendgrid", "password": KEY, "host": sg.url, "extra": {"sandbox_mode": "true"}}
    monkeypatch.setenv("AIRFLOW_CONN_SENDGRID_DEFAULT", json.dumps(conn))
    ch = channel_for("email")
    assert isinstance(ch, SendGridChannel) and ch.sandbox and ch.host == sg.url
    [outcome] = ch.send_batch([message(1)])
    assert outcome.status == "sent" and sg.sandboxed == 1 and sg.received == []


def test_factory_uses_the_connection_host_and_key(sg, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SENDGRID_DEFAULT", f"sendgrid://:{KEY}@{sg.url.replace('://', '%3A%2F%2F')}"
    )
    ch = channel_for("email", rate_per_s=500)
    assert isinstance(ch, SendGridChannel) and ch.throttle.rate == 500
    assert ch.send_batch([message(1)])[0].status == "sent"
    assert KEY not in repr(ch)


def test_wrong_key_is_a_retry_without_hammering(sg):
    ch = SendGridChannel("SG.wrong", sg.url, sleep=Sleeps())
    [outcome] = ch.send_batch([message(1)])
    assert outcome.status == "retry" and "HTTP 401" in outcome.error and sg.requests == 1


def test_many_messages_with_concurrency_arrive_once_each(sg, assert_no_address_logged):
    ch, _ = channel(sg, concurrency=8)
    sg.set_faults(error_rate=0.2, throttle_rate=0.1, seed=5)
    batch = [message(i) for i in range(300)]
    outcomes = ch.send_batch(batch)
    assert [o.delivery_id for o in outcomes] == list(range(300))
    sent = {o.delivery_id for o in outcomes if o.status == "sent"}
    assert {int(r.custom_args["delivery_id"]) for r in sg.received} == sent
    assert sg.duplicates("delivery_id") == {}
    ch.close()
    assert_no_address_logged(*(m.to for m in batch))


def test_faulty_provider_ends_with_every_message_sent_exactly_once(sg, assert_no_address_logged):
    """10% 5xx, 5% 429, 2% timeouts (accepted before the answer was lost): re-sending only what the
    channel called ``retry``, as the dispatcher does, ends with each delivery at SendGrid once."""
    sg.set_faults(error_rate=0.10, throttle_rate=0.05, timeout_rate=0.02, timeout_s=0.6, seed=11)
    ch, _ = channel(sg, timeout_s=0.3, max_attempts=2, concurrency=8)
    pending = [message(i) for i in range(400)]
    statuses: dict[int, str] = {}
    for _round in range(10):
        outcomes = ch.send_batch(pending)
        statuses.update({o.delivery_id: o.status for o in outcomes})
        pending = [m for m, o in zip(pending, outcomes, strict=True) if o.status == "retry"]
        if not pending:
            break
    ch.close()
    assert set(statuses.values()) == {"sent"}
    counts = sg.faults.counts
    assert counts[Outcome.TIMEOUT] > 0 and counts[Outcome.ERROR_500] + counts[Outcome.ERROR_503] > 0
    assert counts[Outcome.THROTTLED] > 0
    assert len(sg.count_by("delivery_id")) == 400 and sg.duplicates("delivery_id") == {}
    assert_no_address_logged(*(f"member{i}@example.com" for i in range(400)))
