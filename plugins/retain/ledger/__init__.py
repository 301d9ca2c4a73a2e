"""The delivery ledger: what Retain intended to send, claimed, sent, failed or skipped (docs/ledger.md)."""

from retain.ledger.store import (
    ClaimedDelivery,
    DeliveryRequest,
    EnqueueResult,
    Ledger,
    LedgerError,
    Run,
    address_hash,
    idempotency_key,
    normalise_address,
    redact,
)

__all__ = [
    "ClaimedDelivery",
    "DeliveryRequest",
    "EnqueueResult",
    "Ledger",
    "LedgerError",
    "Run",
    "address_hash",
    "idempotency_key",
    "normalise_address",
    "redact",
]
