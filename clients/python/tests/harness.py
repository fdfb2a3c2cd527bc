"""Starts the real things the tests drive: ``credpool serve`` on a free
loopback port, and ``credpool simulate --serve-sites``, from the binary
named by ``CREDPOOL_BIN``."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest


def credpool_bin() -> str:
    path = os.environ.get("CREDPOOL_BIN")
    if not path:
        pytest.fail(
            "CREDPOOL_BIN is not set: point it at a built credpool binary "
            "(cargo build; CREDPOOL_BIN=target/debug/credpool), or run these tests "
            "through `cargo test --workspace` (tests/clients_python.rs sets it)",
            pytrace=False,
        )
    if not Path(path).is_file():
        pytest.fail(f"CREDPOOL_BIN={path} is not a file", pytrace=False)
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("CREDPOOL_ADDR", "CREDPOOL_TOKEN", "CREDENTIAL_ENCRYPTION_KEY", "CREDPOOL_LOG"):
        env.pop(k, None)
    return env


def run(data: Path, *args: str, config: Path | None = None) -> str:
    """One credpool command on ``data``; its stdout."""
    cmd = [credpool_bin(), "--data-dir", str(data)]
    if config is not None:
        cmd += ["--config", str(config)]
    out = subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=_env(), timeout=120, check=False
    )
    if out.returncode != 0:
        raise AssertionError(f"credpool {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return out.stdout


def token(data: Path, role: str) -> str:
    return run(data, "token", "create", "--tenant", "default", "--role", role).strip()


class Server:
    """``credpool serve`` on 127.0.0.1, a free port."""

    def __init__(
        self,
        data: Path,
        config: Path,
        interval_ms: int = 200,
        listen: str = "127.0.0.1:0",
        extra: tuple[str, ...] = (),
    ) -> None:
        self.log = data.parent / f"serve-{time.monotonic_ns()}.log"
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(
            [
                credpool_bin(),
                "--data-dir",
                str(data),
                "--config",
                str(config),
                "serve",
                "--listen",
                listen,
                "--interval-ms",
                str(interval_ms),
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=_env(),
        )
        deadline = time.monotonic() + 60
        while True:
            text = self.log.read_text()
            m = re.search(r"serving on (http://\S+)", text)
            if m:
                self.addr = m.group(1)
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"credpool serve exited before serving:\n{text}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"credpool serve did not start:\n{text}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: gone at once, nothing flushed or handed over."""
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Sites:
    """``credpool simulate --serve-sites``: the simulated shop on loopback,
    its accounts loaded into ``data``."""

    def __init__(self, data: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [credpool_bin(), "--data-dir", str(data), "simulate", "--serve-sites", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        try:
            self.ready: dict[str, Any] = json.loads(self._lines.get(timeout=60))
        except queue.Empty:
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"--serve-sites printed no ready line:\n{err}") from None
        self.config = Path(self.ready["config"])
        self.shop = self.ready["sites"][0]["url"]

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._lines.put(line)

    def stop(self) -> dict[str, Any]:
        """SIGINT; the sites' own records."""
        self.proc.send_signal(signal.SIGINT)
        line = self._lines.get(timeout=30)
        self.proc.wait(30)
        return json.loads(line)["records"][0]  # type: ignore[no-any-return]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_logged_in(addr: str, viewer: str, site: str, accounts: int, limit: float = 60) -> None:
    """Until the server's lifecycle has logged every account in."""
    import httpx

    deadline = time.monotonic() + limit
    while True:
        r = httpx.get(
            f"{addr}/v1/stats", params={"site": site}, headers={"Authorization": f"Bearer {viewer}"}
        )
        r.raise_for_status()
        active = r.json()[0]["by_status"]["active"]
        if active >= accounts:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"only {active} of {accounts} accounts logged in: {r.json()}")
        time.sleep(0.2)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    """A ``redis-server`` of the test's own on a free loopback port."""

    def __init__(self, dir: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                "redis-server",
                *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(dir)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        import socket

        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
