from __future__ import annotations

import email
import email.policy
import json
import os
from pathlib import Path

import pytest

from retain.channels import OutgoingEmail, OutgoingSms, channel_for
from retain.channels.outbox import OutboxChannel, write_atomically

ADDRESS = "ann.outbox@example.com"
PHONE = "+14155550123"


def an_email(delivery_id: int = 7, **kw) -> OutgoingEmail:
    values = dict(
        delivery_id=delivery_id,
        campaign="win_back",
        to=ADDRESS,
        subject="Wir vermissen dich, Ann – 50 € Rabatt",
        html="<html><body><p>Hallo <b>Ann</b></p><a href='https://shop.example/u'>Abmelden</a></body></html>",
        text="Hallo Ann\nAbmelden: https://shop.example/u",
        from_email="news@shop.example",
        from_name="Shop News",
        reply_to="care@shop.example",
        custom_args={"delivery_id": str(delivery_id), "campaign_id": "win_back", "idempotency_key": "k1"},
        headers={"List-Unsubscribe": "<https://shop.example/u>"},
    )
    values.update(kw)
    return OutgoingEmail(**values)


def test_without_connections_both_channels_are_the_outbox(tmp_path):
    email_channel, sms_channel = channel_for("email"), channel_for("sms")
    assert isinstance(email_channel, OutboxChannel) and email_channel.channel == "email"
    assert isinstance(sms_channel, OutboxChannel) and sms_channel.channel == "sms"
    assert email_channel.directory == tmp_path / "outbox"


def test_unknown_channel_is_refused():
    with pytest.raises(ValueError, match="unknown channel 'fax'"):
        channel_for("fax")


def test_email_file_parses_back_with_text_and_html_parts(tmp_path, assert_no_address_logged):
    channel = channel_for("email")
    [outcome] = channel.send_batch([an_email()])
    assert outcome.status == "sent" and outcome.provider == "outbox"
    path = tmp_path / "outbox" / "email" / "win_back" / "7.eml"
    assert outcome.provider_message_id == "email/win_back/7.eml"
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg["To"] == ADDRESS
    assert msg["From"] == "Shop News <news@shop.example>"
    assert msg["Subject"] == "Wir vermissen dich, Ann – 50 € Rabatt"
    assert msg["Reply-To"] == "care@shop.example"
    assert msg["List-Unsubscribe"] == "<https://shop.example/u>"
    assert msg["X-Retain-Delivery-Id"] == "7"
    assert msg.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in msg.iter_parts()}
    assert parts["text/plain"].rstrip("\n") == "Hallo Ann\nAbmelden: https://shop.example/u"
    assert "<b>Ann</b>" in parts["text/html"]
    assert msg.get_body(("html",)).get_content() == parts["text/html"]
    assert_no_address_logged(ADDRESS)


def test_sms_file_is_json_with_body(tmp_path):
    [outcome] = channel_for("sms").send_batch(
        [OutgoingSms(3, "birthday", PHONE, "Happy birthday! 20% off", True)]
    )
    assert outcome.status == "sent"
    record = json.loads((tmp_path / "outbox" / "sms" / "birthday" / "3.json").read_text())
    assert record["to"] == PHONE and record["body"] == "Happy birthday! 20% off" and record["is_test"] is True


def test_resend_of_a_delivery_overwrites_its_file(tmp_path):
    channel = channel_for("email")
    channel.send_batch([an_email(subject="first")])
    channel.send_batch([an_email(subject="second")])
    folder = tmp_path / "outbox" / "email" / "win_back"
    assert sorted(p.name for p in folder.iterdir()) == ["7.eml"]  # no temp file left either
    assert email.message_from_bytes((folder / "7.eml").read_bytes(), policy=email.policy.default)[
        "Subject"
    ] == ("second")


def test_lookup_finds_written_deliveries_only(tmp_path):
    channel = channel_for("email")
    channel.send_batch([an_email(11)])
    assert channel.lookup(11).found and channel.lookup(11).provider_message_id == "email/win_back/11.eml"
    assert channel.lookup(12).found is False


def test_interrupted_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "x" / "1.eml"
    write_atomically(path, b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomically(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in path.parent.iterdir()] == ["1.eml"]


def test_write_error_is_a_retry_with_the_reason_never_a_silent_drop(tmp_path, assert_no_address_logged):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the outbox folder should be")
    channel = OutboxChannel("email", blocker)
    outcomes = channel.send_batch([an_email(1), an_email(2)])
    assert [o.status for o in outcomes] == ["retry", "retry"]
    assert all("outbox write failed" in o.error and "errno" in o.error for o in outcomes)
    assert_no_address_logged(ADDRESS)


def test_message_of_the_wrong_kind_fails_with_a_reason(tmp_path):
    [outcome] = OutboxChannel("sms", tmp_path).send_batch([an_email(5)])
    assert outcome.status == "failed" and "OutgoingEmail" in outcome.error
    assert not any(Path(tmp_path).rglob("*.json"))


def test_campaign_name_cannot_escape_the_outbox(tmp_path):
    channel = OutboxChannel("email", tmp_path / "box")
    channel.send_batch([an_email(9, campaign="../../etc")])
    written = list((tmp_path / "box").rglob("9.eml"))
    assert len(written) == 1 and (tmp_path / "box") in written[0].parents
