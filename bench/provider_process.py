"""A local provider server (retain.testing) in a process of its own, as a real provider is.

In the bench process its request parsing would compete with the code being measured for the one
interpreter lock (the server parses every request body: 1,000 personalizations are about half a
megabyte of JSON). Started with ``fork`` before the bench starts threads; the bench asks it, over a pipe,
for what the server recorded (``count_by``, ``requests``) and tells it to ``clear``.

    with ServerProcess(SendGridServer, api_keys={KEY}, latency_s=0.02) as server:
        server.url, server.requests, server.count_by("delivery_id"), server.clear()
"""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter
from typing import Any


def _serve(conn: Any, cls: type, kwargs: dict[str, Any]) -> None:
    with cls(**kwargs) as server:
        conn.send(server.url)
        while True:
            try:
                op, args = conn.recv()
            except EOFError:
                return
            if op == "stop":
                conn.send(None)
                return
            if op == "requests":
                conn.send(server.requests)
            elif op == "clear":
                conn.send(server.clear())
            elif op == "count_by":
                conn.send(Counter(server.count_by(*args)))
            else:
                conn.send(ValueError(f"unknown server operation {op!r}"))


class ServerProcess:
    def __init__(self, cls: type, **kwargs: Any) -> None:
        self._cls, self._kwargs = cls, kwargs
        self._conn: Any = None
        self._proc: mp.process.BaseProcess | None = None
        self.url = ""

    def __enter__(self) -> ServerProcess:
        ctx = mp.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self._cls, self._kwargs), daemon=True)
        self._proc.start()
        if not self._conn.poll(30):
            raise SystemExit(f"{self._cls.__name__} did not start within 30 s")
        self.url = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._call("stop")
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()

    def _call(self, op: str, *args: Any) -> Any:
        self._conn.send((op, args))
        answer = self._conn.recv()
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def requests(self) -> int:
        return self._call("requests")

    def clear(self) -> None:
        self._call("clear")

    def count_by(self, key: str) -> Counter:
        return self._call("count_by", key)
