"""Real Scrapy crawls of the simulated shop (``credpool simulate
--serve-sites``): one through credpool, one with the usual cookie rotation,
same site and seed, side by side; each checked from its own records and
from the site's.

Run alone, with the figures: ``CREDPOOL_BIN=target/debug/credpool python3 -m
pytest -s clients/python/tests/test_scrapy_crawl.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import harness
import pytest

from credpool import Client, NoCredentialAvailable

ACCOUNTS = 30
SECONDS = int(os.environ.get("CREDPOOL_CRAWL_SECONDS", "30"))
CONCURRENCY = int(os.environ.get("CREDPOOL_CRAWL_CONCURRENCY", "5"))
SEED = "42"
#: Both crawls: sessions outlive the crawl (a cookie list stays valid), and
#: the shop changes its defences a few seconds into it.
SITE_ARGS = (
    "--accounts",
    str(ACCOUNTS),
    "--seed",
    SEED,
    "--session-ttl",
    "10m",
    "--defence-change-at",
    "20s",
)
HERE = Path(__file__).parent
README = HERE.parents[2] / "README.md"


def readme_example() -> str:
    """The first Python block of README's "Python and Scrapy" section."""
    text = README.read_text()
    section = text.split("## Python and Scrapy", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def crawl(mode: str, shop: str, env: dict[str, str], stdin: str = "") -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE / "crawl_shop.py"), mode, shop, str(SECONDS), str(CONCURRENCY)],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=SECONDS + 90,
        check=False,
    )
    assert out.returncode == 0, f"the {mode} crawl failed:\n{out.stderr[-4000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def account_of(credential_id: str) -> str:
    """``shop-0007`` -> ``user0007``: the site's name for the account."""
    return "user" + credential_id.rsplit("-", 1)[1]


def per_account_hour(pages: int) -> float:
    return pages / (ACCOUNTS * SECONDS / 3600)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = dict(os.environ)
    base.pop("CREDPOOL_ADDR", None)
    base.pop("CREDPOOL_TOKEN", None)
    base["PYTHONPATH"] = os.pathsep.join([str(HERE), base.get("PYTHONPATH", "")])
    out: dict[str, Any] = {}

    # Through credpool.
    data = tmp_path_factory.mktemp("pool") / "data"
    harness.run(data, "init")
    sites = harness.Sites(data, *SITE_ARGS)
    server = None
    try:
        crawler_token = harness.token(data, "crawler")
        viewer = harness.token(data, "viewer")
        server = harness.Server(data, sites.config)
        harness.wait_logged_in(server.addr, viewer, "shop.sim", ACCOUNTS - 1)
        env = {**base, "CREDPOOL_ADDR": server.addr, "CREDPOOL_TOKEN": crawler_token}
        example_file = data.parent / "readme_example.py"
        example_file.write_text(readme_example())
        example = subprocess.run(
            [sys.executable, str(example_file)],
            env={**env, "SHOP": sites.shop},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        out["example"] = example
        out["pool"] = crawl("pool", sites.shop, env)
        retired = Client(server.addr, viewer).list_credentials(site="shop.sim", status="banned")
        out["pool_retired"] = sorted(account_of(c["id"]) for c in retired)
        out["pool_site"] = sites.stop()
    finally:
        if server:
            server.stop()
        sites.kill()

    # The usual cookie rotation: the same site and seed; its cookie list
    # is the sessions the accounts have once logged in.
    data = tmp_path_factory.mktemp("naive") / "data"
    harness.run(data, "init")
    sites = harness.Sites(data, *SITE_ARGS)
    server = None
    try:
        crawler_token = harness.token(data, "crawler")
        viewer = harness.token(data, "viewer")
        server = harness.Server(data, sites.config)
        harness.wait_logged_in(server.addr, viewer, "shop.sim", ACCOUNTS - 1)
        pool = Client(server.addr, crawler_token)
        leases = []
        # Every account that logged in (one may be banned at random early).
        with contextlib.suppress(NoCredentialAvailable):
            while len(leases) < ACCOUNTS:
                leases.append(pool.acquire("shop.sim"))
        cookies = [[account_of(x.credential.id), x.cookie_header] for x in leases]
        for x in leases:
            x.release()
        server.stop()
        server = None
        out["naive"] = crawl("naive", sites.shop, base, stdin=json.dumps(cookies))
        out["naive_site"] = sites.stop()
    finally:
        if server:
            server.stop()
        sites.kill()
    print_side_by_side(out)
    return out


def lost(out: dict[str, Any], mode: str) -> set[str]:
    site = set(out[f"{mode}_site"]["banned_accounts"])
    if mode == "pool":
        return site | set(out["pool_retired"])
    return site | set(out["naive"]["accounts_dropped"])


def print_side_by_side(out: dict[str, Any]) -> None:
    rows = [
        ("pages served (site's count)", lambda m: out[f"{m}_site"]["pages_ok"]),
        ("successful pages (crawl's count)", lambda m: out[m]["pages_ok"]),
        (
            "successful pages per account-hour",
            lambda m: f"{per_account_hour(out[m]['pages_ok']):,.0f}",
        ),
        ("accounts lost", lambda m: len(lost(out, m))),
        ("  banned by the site", lambda m: out[f"{m}_site"]["banned"]),
        ("  of them for abuse", lambda m: out[f"{m}_site"]["banned_for_abuse"]),
        (
            "  retired by the pool / dropped by the rotation",
            lambda m: len(out["pool_retired"]) if m == "pool" else len(out[m]["accounts_dropped"]),
        ),
        ("blocks (403 episodes, site)", lambda m: out[f"{m}_site"]["blocks"]),
        (
            "availability (acquires granted)",
            lambda m: f"{out[m]['availability']:.1%}" if out[m]["availability"] else "-",
        ),
        ("one session used twice at once (crawl)", lambda m: out[m]["used_twice_at_once"]),
        ("one session used twice at once (site)", lambda m: out[f"{m}_site"]["concurrent_use"]),
    ]
    print()
    print(
        f"Scrapy crawl of shop.sim, {ACCOUNTS} accounts, seed {SEED}, {SECONDS} s, "
        f"CONCURRENT_REQUESTS={CONCURRENCY}, defences change at 20 s of the site's life"
    )
    print(f"| {'':48} | {'credpool':>10} | {'cookie rotation':>15} |")
    print(f"|{'-' * 50}|{'-' * 12}:|{'-' * 17}:|")
    for label, value in rows:
        print(f"| {label:48} | {value('pool')!s:>10} | {value('naive')!s:>15} |")
    for m in ("pool", "naive"):
        print(f"{m}: crawl {json.dumps(out[m])}")
        print(f"{m}: site  {json.dumps(out[m + '_site'])}")


def test_the_readme_example_runs_as_written(results: dict[str, Any]) -> None:
    example = results["example"]
    assert example.returncode == 0, example.stderr
    assert "shop-" in example.stdout and "200 -> active" in example.stdout, example.stdout


def test_crawl_through_credpool_meets_the_slos(results: dict[str, Any]) -> None:
    pool, site = results["pool"], results["pool_site"]
    print(
        f"credpool: availability {pool['availability']:.1%}, "
        f"banned for abuse {site['banned_for_abuse']}, "
        f"sessions used twice at once {pool['used_twice_at_once']} (site: {site['concurrent_use']})"
    )
    assert pool["pages_ok"] > 100, pool
    assert pool["availability"] >= 0.95, pool
    assert site["banned_for_abuse"] == 0, site
    assert pool["used_twice_at_once"] == 0, pool
    assert site["concurrent_use"] == 0, site
    # The crawl's count and the site's agree on the pages served.
    assert abs(site["pages_ok"] - pool["pages_ok"]) <= CONCURRENCY + 5, (pool, site)


def test_the_cookie_rotation_crawled_the_same_site(results: dict[str, Any]) -> None:
    naive, site = results["naive"], results["naive_site"]
    assert naive["uses"] > 100, naive
    assert abs(site["pages_ok"] - naive["pages_ok"]) <= CONCURRENCY + 5, (naive, site)
    # What the rotation does not prevent, the site sees.
    assert len(lost(results, "naive")) >= len(lost(results, "pool")), results
