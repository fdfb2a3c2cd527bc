"""A live ``credpool serve`` for the client tests, with a token per role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import harness
import pytest


@dataclass
class Live:
    addr: str
    admin: str
    operator: str
    viewer: str
    crawler: str
    data: Path
    log: Path


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("serve")
    data = root / "data"
    harness.run(data, "init")
    config = root / "credpool.toml"
    # One block retires a credential, so unban has something to lift.
    config.write_text("[policy]\nban_after_blocks = 1\n")
    tokens = {r: harness.token(data, r) for r in ("admin", "operator", "viewer", "crawler")}
    server = harness.Server(data, config)
    try:
        yield Live(addr=server.addr, data=data, log=server.log, **tokens)
    finally:
        server.stop()
