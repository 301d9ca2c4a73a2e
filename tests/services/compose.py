"""Run docker-compose.yml's services without Docker: the same commands and environment, on this machine.

Host names of other services become 127.0.0.1, container paths become the checkout and temporary
folders, and `${VAR:?...}` / `${VAR:-default}` are filled in as Compose would from its .env file.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::(?P<op>[?-])(?P<arg>[^}]*))?\}")


def interpolate(value: str, dotenv: dict[str, str]) -> str:
    """Compose's variable interpolation: `${X}`, `${X:-default}`, `${X:?error}`."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if dotenv.get(name):
            return dotenv[name]
        if op == "-":
            return arg
        if op == "?":
            raise KeyError(f"docker-compose.yml needs {name}: {arg}")
        return ""

    return _INTERPOLATION.sub(replace, value)


@dataclass
class Service:
    name: str
    command: list[str]
    environment: dict[str, str]


@dataclass
class ComposeFile:
    path: Path
    services: dict[str, dict] = field(init=False)

    def __post_init__(self) -> None:
        self.services = yaml.safe_load(self.path.read_text())["services"]

    def service(self, name: str, dotenv: dict[str, str], rewrite: dict[str, str]) -> Service:
        spec = self.services[name]
        env = {}
        for key, value in (spec.get("environment") or {}).items():
            env[key] = _rewrite(interpolate(str(value), dotenv), rewrite)
        command = [_rewrite(interpolate(str(part), dotenv), rewrite) for part in spec["command"]]
        return Service(name, command, env)


def _rewrite(value: str, rewrite: dict[str, str]) -> str:
    for old, new in rewrite.items():
        value = value.replace(old, new)
    return value


@dataclass
class RunningService:
    service: Service
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def start(service: Service, base_env: dict[str, str], log_dir: Path) -> RunningService:
    log_path = log_dir / f"{service.name}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        service.command,
        env={**base_env, **service.environment},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return RunningService(service, process, log_path)


def wait_for(predicate, timeout: float, interval: float = 1.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}")
