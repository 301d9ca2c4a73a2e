"""The part both fake providers share: a ThreadingHTTPServer on a free loopback port in a thread."""

from __future__ import annotations

import abc
import json
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from retain.testing.faults import FaultInjector, Faults


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (an injected timeout) closes its socket before we answer: not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class Response:
    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}
        )


class LocalProviderServer(abc.ABC):
    """Base class: start/stop, the fault injector and a thread-safe list of what was accepted."""

    max_body_bytes: int = 30 * 1024 * 1024

    def __init__(self, faults: Faults | None = None, **fault_knobs: Any) -> None:
        faults = faults or Faults()
        self.faults = FaultInjector(faults)
        if fault_knobs:
            self.faults.update(**fault_knobs)
        self._lock = threading.Lock()
        self._received: list[Any] = []
        self.requests = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> Self:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Keep-alive clients (requests, used by twilio) otherwise stall ~40 ms per call on Nagle
                # and delayed ACK, since headers and body go out in separate writes.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence per-request logs
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                too_big = length > server.max_body_bytes
                remaining, chunks = length, []
                while remaining > 0:  # always drain the body so the client can read our answer
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                    if not too_big:
                        chunks.append(chunk)
                with server._lock:
                    server.requests += 1
                if too_big:
                    resp = server.too_large(length)
                else:
                    resp = server.handle(self.command, self.path, self.headers, b"".join(chunks))
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.body)))
                self.end_headers()
                if resp.body:
                    self.wfile.write(resp.body)

            do_POST = do_GET = do_PUT = do_DELETE = _any

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- faults ------------------------------------------------------------------------------------------
    def set_faults(self, **knobs: Any) -> None:
        """Change fault knobs at run time, e.g. ``server.set_faults(error_rate=0.1, latency_s=0.02)``."""
        self.faults.update(**knobs)

    def _sleep_latency(self) -> None:
        if self.faults.faults.latency_s > 0:
            time.sleep(self.faults.faults.latency_s)

    # -- what was accepted -------------------------------------------------------------------------------
    def _record(self, items: Iterable[Any]) -> None:
        with self._lock:
            self._received.extend(items)

    @property
    def received(self) -> list[Any]:
        """A copy of everything accepted so far, one entry per recipient."""
        with self._lock:
            return list(self._received)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()
            self.requests = 0

    @abc.abstractmethod
    def _key(self, key: str | Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Provided by each provider's server."""

    def count_by(self, key: str | Callable[[Any], Any]) -> Counter:
        """How many accepted recipients per value of ``key`` (a record field, a custom arg, or a function)."""
        fn = self._key(key)
        return Counter(fn(r) for r in self.received)

    def duplicates(self, key: str | Callable[[Any], Any]) -> dict[Any, int]:
        """Values of ``key`` accepted more than once, with their counts (empty when nothing was doubled)."""
        return {k: n for k, n in self.count_by(key).items() if n > 1}

    # -- each provider's server implements these --------------------------------------------------------
    @abc.abstractmethod
    def handle(self, method: str, path: str, headers: Any, body: bytes) -> Response:
        """Provided by each provider's server."""

    @abc.abstractmethod
    def too_large(self, length: int) -> Response:
        """Provided by each provider's server."""
