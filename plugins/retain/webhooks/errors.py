"""The one exception the receiver turns into an HTTP answer."""

from __future__ import annotations


class Rejected(Exception):
    """A request refused with ``status``; ``reason`` is safe to log and to return (no addresses)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
