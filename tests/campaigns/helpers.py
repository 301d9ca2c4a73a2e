"""A recording channel and ledger queries shared by the campaign tests."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from retain.channels.base import Channel, Outgoing, SendOutcome
from retain.ledger import Ledger
from retain.ledger.models import Delivery


class RecordingChannel(Channel):
    """Accepts every message and remembers which delivery ids it was handed (a provider stand-in)."""

    provider = "recording"

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.delivery_ids: list[int] = []

    def send_batch(self, messages: Sequence[Outgoing]) -> list[SendOutcome]:
        out = []
        for m in messages:
            self.delivery_ids.append(m.delivery_id)
            out.append(
                SendOutcome(m.delivery_id, "sent", self.provider, provider_message_id=f"rec-{m.delivery_id}")
            )
        return out


def channels() -> dict[str, RecordingChannel]:
    return {"email": RecordingChannel("email"), "sms": RecordingChannel("sms")}


def rows(ledger: Ledger, campaign: str | None = None, **where) -> list[dict]:
    cols = Delivery.__table__.c
    conds = [getattr(cols, k) == v for k, v in where.items()]
    if campaign is not None:
        conds.append(cols.campaign == campaign)
    with ledger.engine.connect().execution_options(retain_read_only=True) as conn, conn.begin():
        return [dict(r._mapping) for r in conn.execute(select(Delivery.__table__).where(*conds))]
