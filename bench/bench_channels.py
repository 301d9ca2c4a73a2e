"""Channel throughput and throttle accuracy against the local SendGrid server (docs/benchmarks.md, Channels).

(a) Emails to ``retain.testing.SendGridServer`` with 20 ms added latency per request:

- stock Airflow path: ``airflow.providers.sendgrid.utils.emailer.send_email``
  (apache-airflow-providers-sendgrid 4.2.5), one call per message, as an Airflow email backend sends.
  The provider builds ``sendgrid.SendGridAPIClient(api_key=...)`` with SendGrid's hard-coded host; the
  bench replaces that one constructor, for the duration of the stock run, by the same class with
  ``host=<local server>``. Everything else (the connection lookup through ``BaseHook``, the ``Mail``
  helper objects, the request) is the provider's own code. It is measured on ``--stock`` messages
  (default 1,500) and its rate extrapolated to the 100k.
- ours, shared content: ``SendGridChannel.send_shared``: 1,000 personalizations per request,
  per-member values as substitutions, 8 requests in flight. The full 100k.
- ours, one request per message (content rendered per member): ``SendGridChannel.send_batch`` with 64
  threads, measured on ``--per-message`` messages (default 10,000).

(b) Throttle: ``SendGridChannel`` with a ``TokenBucket(R, burst=1)``, one request per message, and at the
same time ``TwilioChannel`` at the SMS default (1 msg/s, one long code) against
``retain.testing.TwilioServer``, for ``--throttle-seconds`` (default 60 s): the rate each server saw
(messages after the first / time between the first and the last) against the configured one.

Every run checks the server recorded each delivery exactly once.

    .venv/bin/python bench/bench_channels.py [--emails 100000] [--stock 1500] [--per-message 10000]
                                             [--rate 50] [--throttle-seconds 60] [--throttle-only]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import threading
import time
from unittest import mock

import sendgrid

from retain.channels import OutgoingEmail, OutgoingSms
from retain.channels.sendgrid import SendGridChannel, SharedContent, SharedRecipient
from retain.channels.throttle import SMS_LONG_CODE_RATE_PER_S, TokenBucket
from retain.channels.twilio import TwilioChannel
from retain.testing import SendGridServer, TwilioServer

KEY = "SG.bench-key"
LATENCY_S = 0.02
HTML = (
    "<html><body><h1>Hi -first_name-</h1><p>" + "Your member offer is waiting. " * 40 + "</p></body></html>"
)
TEXT = "Hi -first_name-\n" + "Your member offer is waiting. " * 40


def address(i: int) -> str:
    return f"member{i:07d}@example.com"


def check_once(server: SendGridServer, expected: int, what: str) -> None:
    counts = server.count_by("delivery_id")
    dupes = sum(1 for n in counts.values() if n > 1)
    if len(counts) != expected or dupes:
        raise SystemExit(
            f"{what}: server recorded {len(counts)} deliveries (expected {expected}), {dupes} twice"
        )


def stock(server: SendGridServer, n: int) -> float:
    from airflow.providers.sendgrid.utils import emailer

    os.environ["AIRFLOW_CONN_SENDGRID_DEFAULT"] = json.dumps({"conn_type": "sendgrid", "password": KEY})
    # The provider logs every recipient list at INFO; keep addresses out of the bench output.
    logging.getLogger(emailer.__name__).setLevel(logging.WARNING)
    local_client = functools.partial(sendgrid.SendGridAPIClient, host=server.url)
    server.clear()
    with mock.patch.object(emailer.sendgrid, "SendGridAPIClient", local_client):
        start = time.perf_counter()
        for i in range(n):
            emailer.send_email(
                address(i),
                f"Hi member {i}",
                HTML.replace("-first_name-", f"member {i}"),
                from_email="news@shop.example",
                personalization_custom_args={"delivery_id": str(i), "campaign_id": "bench"},
            )
        elapsed = time.perf_counter() - start
    check_once(server, n, "stock")
    return n / elapsed


def shared(server: SendGridServer, n: int) -> float:
    server.clear()
    channel = SendGridChannel(KEY, server.url, concurrency=8, timeout_s=30)
    content = SharedContent("bench", "Hi -first_name-", HTML, TEXT, "news@shop.example", "Shop")
    recipients = [
        SharedRecipient(
            i,
            address(i),
            {"-first_name-": f"member {i}"},
            headers={"List-Unsubscribe": f"<https://shop.example/u/{i}>"},
        )
        for i in range(n)
    ]
    start = time.perf_counter()
    outcomes = channel.send_shared(content, recipients)
    elapsed = time.perf_counter() - start
    channel.close()
    if {o.status for o in outcomes} != {"sent"}:
        raise SystemExit("shared: not every message was sent")
    check_once(server, n, "shared")
    return n / elapsed


def per_message(server: SendGridServer, n: int, threads: int = 64) -> float:
    server.clear()
    channel = SendGridChannel(KEY, server.url, concurrency=threads, timeout_s=30)
    messages = [
        OutgoingEmail(
            delivery_id=i,
            campaign="bench",
            to=address(i),
            subject=f"Hi member {i}",
            html=HTML.replace("-first_name-", f"member {i}"),
            text=TEXT.replace("-first_name-", f"member {i}"),
            from_email="news@shop.example",
            headers={"List-Unsubscribe": f"<https://shop.example/u/{i}>"},
        )
        for i in range(n)
    ]
    start = time.perf_counter()
    for chunk in range(0, n, 1000):  # the dispatcher hands over claimed chunks
        outcomes = channel.send_batch(messages[chunk : chunk + 1000])
        if {o.status for o in outcomes} != {"sent"}:
            raise SystemExit("per-message: not every message was sent")
    elapsed = time.perf_counter() - start
    channel.close()
    check_once(server, n, "per-message")
    return n / elapsed


def throttle(server: SendGridServer, rate: float, seconds: float) -> tuple[float, int]:
    server.clear()
    bucket = TokenBucket(rate, burst=1)
    channel = SendGridChannel(KEY, server.url, concurrency=8, timeout_s=30, throttle=bucket)
    n = int(rate * seconds) + 1
    messages = [
        OutgoingEmail(i, "bench", address(i), f"Hi {i}", f"<p>{i}</p>", f"{i}", "news@shop.example")
        for i in range(n)
    ]
    outcomes = channel.send_batch(messages)
    channel.close()
    if {o.status for o in outcomes} != {"sent"}:
        raise SystemExit("throttle: not every message was sent")
    check_once(server, n, "throttle")
    times = sorted(r.received_at for r in server.received)
    return (len(times) - 1) / (times[-1] - times[0]), n


def sms_throttle(seconds: float, result: dict) -> None:
    rate = SMS_LONG_CODE_RATE_PER_S
    with TwilioServer() as tw:
        channel = TwilioChannel(
            tw.account_sid,
            tw.auth_token,
            from_number="+14155550199",
            base_url=tw.url,
            concurrency=4,
            throttle=TokenBucket(rate, burst=1),
        )
        n = int(rate * seconds) + 1
        outcomes = channel.send_batch(
            [OutgoingSms(i, "bench", f"+1415600{i:04d}", f"Hi {i}") for i in range(n)]
        )
        channel.close()
        if {o.status for o in outcomes} != {"sent"} or len(tw.received) != n or tw.duplicates("to"):
            raise SystemExit("sms throttle: not every message was sent exactly once")
        times = sorted(r.received_at for r in tw.received)
        result.update(rate=rate, n=n, measured=(n - 1) / (times[-1] - times[0]))


def report(label: str, n: int, rate: float, target: int, stock_rate: float) -> None:
    took = f"{target:,} in {target / rate:,.1f} s" + (" (extrapolated)" if n < target else "")
    print(f"{label:<42} {n:>7,} msgs {rate:>9,.0f} msg/s  -> {took}  ({rate / stock_rate:.1f}x stock)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=100_000)
    parser.add_argument("--stock", type=int, default=1_500)
    parser.add_argument("--per-message", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--throttle-seconds", type=float, default=60.0)
    parser.add_argument("--throttle-only", action="store_true", help="skip the throughput runs")
    args = parser.parse_args()

    with SendGridServer(api_keys={KEY}, latency_s=LATENCY_S) as server:
        latency_ms = LATENCY_S * 1000
        print(f"local SendGrid server, {latency_ms:.0f} ms added latency per request, {os.cpu_count()} cores")
        if not args.throttle_only:
            emails = args.emails
            stock_rate = stock(server, args.stock)
            report("stock provider send_email, 1 call/message", args.stock, stock_rate, emails, stock_rate)
            per_rate = per_message(server, args.per_message)
            report("ours, 1 request/message, 64 threads", args.per_message, per_rate, emails, stock_rate)
            shared_rate = shared(server, emails)
            report("ours, shared content, 1,000/request", emails, shared_rate, emails, stock_rate)
        sms: dict = {}
        sms_thread = threading.Thread(target=sms_throttle, args=(args.throttle_seconds, sms))
        sms_thread.start()
        measured, n = throttle(server, args.rate, args.throttle_seconds)
        sms_thread.join()
        error = (measured - args.rate) / args.rate
        print(
            f"throttle: configured {args.rate:g} msg/s, {n:,} messages over {args.throttle_seconds:g} s: "
            f"measured {measured:.2f} msg/s ({error:+.2%})"
        )
        if sms:
            sms_error = (sms["measured"] - sms["rate"]) / sms["rate"]
            print(
                f"throttle: Twilio SMS default {sms['rate']:g} msg/s, {sms['n']:,} messages: "
                f"measured {sms['measured']:.3f} msg/s ({sms_error:+.2%})"
            )


if __name__ == "__main__":
    main()
