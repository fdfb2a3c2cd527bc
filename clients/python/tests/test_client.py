"""The sync client against a live ``credpool serve``: leases as context
managers, reports from responses, typed errors, and every endpoint."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest
from conftest import Live

import credpool
from credpool import (
    Client,
    Conflict,
    Forbidden,
    InvalidRequest,
    LeaseFinished,
    NoCredentialAvailable,
    NotFound,
    Report,
    Unauthorized,
    UnknownSite,
    body_contains,
    classify,
    redirects_to,
)


def site() -> str:
    return f"t{uuid.uuid4().hex[:10]}.example"


def add_session(op: Client, site: str, n: int = 1, max_concurrent: int = 1) -> list[str]:
    ids = []
    for i in range(n):
        cid = f"{site}-s{i}"
        op.add_credential(
            {
                "site": site,
                "type": "session",
                "id": cid,
                "max_concurrent": max_concurrent,
                "secrets": {
                    "cookies": [{"name": "sid", "value": f"v{i}"}],
                    "headers": [{"name": "X-Api", "value": f"h{i}"}],
                },
            }
        )
        ids.append(cid)
    return ids


@pytest.fixture
def op(live: Live) -> Client:
    return Client(live.addr, live.operator)


@pytest.fixture
def crawler(live: Live) -> Client:
    return Client(live.addr, live.crawler)


def test_settings_come_from_the_environment(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDPOOL_ADDR", live.addr)
    monkeypatch.setenv("CREDPOOL_TOKEN", live.viewer)
    assert Client().healthz()["status"] == "alive"
    monkeypatch.delenv("CREDPOOL_ADDR")
    with pytest.raises(credpool.CredpoolError, match="CREDPOOL_ADDR"):
        Client()
    monkeypatch.delenv("CREDPOOL_TOKEN")
    with pytest.raises(credpool.CredpoolError, match="CREDPOOL_TOKEN"):
        Client(live.addr)


def test_a_lease_left_without_a_report_is_released(op: Client, crawler: Client) -> None:
    s = site()
    (cid,) = add_session(op, s)
    with crawler.lease(s, type="session") as lease:
        assert lease.credential.id == cid
        assert lease.cookies == {"sid": "v0"}
        assert lease.headers == {"X-Api": "h0"}
        assert lease.request_headers()["Cookie"] == "sid=v0"
        assert lease.access_token is None
        # Exclusive: nobody else gets it meanwhile.
        with pytest.raises(NoCredentialAvailable) as no:
            crawler.acquire(s)
        assert no.value.reason == "all-leased"
        assert no.value.site == s
        assert isinstance(no.value.alternatives, list)
    assert lease.finished
    view = op.get_credential(cid)
    assert view["open_leases"] == 0
    assert view["success_count"] == 0 and view["fail_count"] == 0


def test_an_exception_in_the_block_reports_a_failure(op: Client, crawler: Client) -> None:
    s = site()
    (cid,) = add_session(op, s)
    with pytest.raises(httpx.ConnectError), crawler.lease(s) as lease:
        raise httpx.ConnectError("site unreachable")
    assert lease.finished
    view = op.get_credential(cid)
    assert view["fail_count"] == 1 and view["open_leases"] == 0
    with pytest.raises(KeyError), crawler.lease(s):
        raise KeyError("a bug in the crawler")
    assert op.get_credential(cid)["fail_count"] == 2


def test_report_response_maps_the_sites_answer(op: Client, crawler: Client) -> None:
    s = site()
    (cid,) = add_session(op, s)
    with crawler.lease(s) as lease:
        effect = lease.report_response(httpx.Response(200, text="<html>ok</html>"))
    assert effect.status == "active"
    assert op.get_credential(cid)["success_count"] == 1
    with crawler.lease(s) as lease:
        effect = lease.report_response(httpx.Response(429, headers={"Retry-After": "7"}))
    assert effect.status == "cooling" and effect.cooldown_until is not None
    s2 = site()
    (cid2,) = add_session(op, s2)
    with crawler.lease(s2) as lease:
        effect = lease.report_response(httpx.Response(403, text="access denied"))
    # This server's policy retires a credential on its first block.
    assert effect.status == "banned"
    assert op.get_credential(cid2)["status"] == "banned"
    # Nothing left for that site now: the error says why.
    with pytest.raises(NoCredentialAvailable) as no:
        crawler.acquire(s2)
    assert no.value.reason == "all-banned"
    assert no.value.status in ("no-available", "all-blocked")
    # A person lifts the ban.
    assert op.unban(cid2)["status"] != "banned"
    with crawler.lease(s2) as lease:
        assert lease.credential.id == cid2
    # A site the pool has no credential for: its own error, not a wait, with
    # the known site that looks like it.
    typo = "www." + s2.upper().replace(".EXAMPLE", ".exampel")
    with pytest.raises(UnknownSite) as unknown:
        crawler.acquire(typo, wait=5)
    assert unknown.value.status == 404 and unknown.value.code == "unknown_site"
    assert f"did you mean {s2}?" in unknown.value.alternatives
    assert isinstance(unknown.value, NotFound)


def test_classify_follows_status_codes_and_plugged_checks() -> None:
    assert classify(httpx.Response(200)).outcome == "success"
    assert classify(httpx.Response(404)).outcome == "success"
    assert classify(httpx.Response(401)) == Report("expired", 401)
    assert classify(httpx.Response(403)) == Report("blocked", 403)
    assert classify(httpx.Response(429, headers={"Retry-After": "12"})) == Report(
        "rate-limited", 429, 12
    )
    assert classify(httpx.Response(503)).outcome == "network"
    assert classify(httpx.Response(400)).outcome == "failed"
    captcha = body_contains('<form id="captcha"')
    page = httpx.Response(200, text='<html><form id="captcha"></form></html>')
    assert classify(page, [captcha]) == Report("challenged", 200)
    logout = redirects_to("/login")
    moved = httpx.Response(302, headers={"Location": "/login?next=/x"})
    assert classify(moved, [captcha, logout]) == Report("expired", 302)
    assert classify(httpx.Response(302, headers={"Location": "/x"}), [logout]).outcome == "success"
    assert credpool.classify_exception(httpx.ReadTimeout("slow")).outcome == "network"
    assert credpool.classify_exception(ConnectionRefusedError()).outcome == "network"
    assert credpool.classify_exception(ValueError()).outcome == "failed"
    with pytest.raises(ValueError):
        Report("fine")


def test_the_clients_checks_apply_to_report_response(live: Live, op: Client) -> None:
    s = site()
    (cid,) = add_session(op, s)
    c = Client(live.addr, live.crawler, checks=[body_contains("please solve")])
    with c.lease(s) as lease:
        effect = lease.report_response(httpx.Response(200, text="please solve this"))
    assert effect.status == "challenged"
    assert op.get_credential(cid)["status"] == "challenged"
    # No login is configured for the site: a reset would leave it expired,
    # so it is refused naming the way back, and unban (once solved) is it.
    with pytest.raises(InvalidRequest, match="credpool unban"):
        op.reset_challenge(cid)
    assert op.unban(cid)["status"] == "active"


def test_acquire_waits_out_no_available(op: Client, crawler: Client) -> None:
    s = site()
    add_session(op, s)
    held = crawler.acquire(s)
    threading.Timer(0.5, held.release).start()
    started = time.monotonic()
    lease = crawler.acquire(s, wait=10)
    assert 0.4 < time.monotonic() - started < 10
    assert lease.credential.id == held.credential.id
    lease.report("success")
    with pytest.raises(LeaseFinished):
        lease.release()


def test_errors_are_typed(live: Live, op: Client, crawler: Client) -> None:
    with pytest.raises(Unauthorized) as e:
        Client(live.addr, "cpt_not_a_token").stats()
    assert e.value.status == 401
    with pytest.raises(Forbidden):
        crawler.list_credentials()
    with pytest.raises(InvalidRequest) as bad:
        crawler.release("not-a-lease")
    assert bad.value.code == "invalid_lease_id"
    s = site()
    add_session(op, s)
    lease = crawler.acquire(s)
    lease.release()
    # A repeat is answered as the first (issue 15); a lease never granted
    # is not found.
    crawler.release(lease.id)
    with pytest.raises(NotFound):
        crawler.release("l999999.0123456789abcdef")
    with pytest.raises(Conflict):
        add_session(op, s)
    with pytest.raises(InvalidRequest, match="type"):
        crawler.acquire(s, type="spaceship")
    with pytest.raises(credpool.ConnectionFailed):
        Client("http://127.0.0.1:9", "cpt_x").healthz()


def test_every_endpoint(live: Live, op: Client, crawler: Client) -> None:
    admin = Client(live.addr, live.admin)
    viewer = Client(live.addr, live.viewer)
    assert admin.healthz()["status"] == "alive"
    assert admin.readyz()["status"] == "ready"
    s = site()
    ids = add_session(op, s, n=2)
    records = [
        {
            "site": s,
            "type": "session",
            "id": f"{s}-imported",
            "secrets": {"cookies": [{"name": "sid", "value": "imp"}]},
        }
    ]
    imported = op.import_credentials(json.dumps(records), "json")
    assert imported["imported"] == 1 or f"{s}-imported" in json.dumps(imported)
    listed = {c["id"] for c in viewer.list_credentials(site=s)}
    assert listed == {*ids, f"{s}-imported"}
    assert viewer.get_credential(ids[0])["site"] == s
    lease = crawler.acquire(s)
    effect, got = crawler.report_and_acquire(lease, "success", s)
    assert effect.status == "active" and got.lease is not None
    got.lease.release()
    assert viewer.stats(s)[0]["total"] == 3
    assert isinstance(viewer.alerts(), list)
    assert isinstance(op.tickets(), list)
    with pytest.raises(NotFound):
        op.answer_ticket("tk-none", "123456")
    view, secrets = admin.reveal(ids[0])
    assert view["id"] == ids[0] and secrets.cookies["sid"] == "v0"
    exported = admin.export(ids[0], "json")
    assert "v0" in exported.reveal()
    made = admin.create_token("viewer", expires_in_seconds=60)
    new_viewer = Client(live.addr, made["token"])
    assert new_viewer.stats(s)
    assert any(t["id"] == made["id"] for t in admin.tokens())
    admin.revoke_token(made["id"])
    time.sleep(0.5)
    with pytest.raises(Unauthorized):
        new_viewer.stats(s)
    assert "credpool" in viewer.metrics()
    op.remove_credential(f"{s}-imported")
    with pytest.raises(NotFound):
        viewer.get_credential(f"{s}-imported")


def test_prefer_fresh_leases_the_latest_renewed(op: Client, crawler: Client) -> None:
    s = site()
    ids = [f"{s}-old", f"{s}-mid", f"{s}-new"]
    for cid in ids:
        op.add_credential(
            {
                "site": s,
                "type": "session",
                "id": cid,
                "secrets": {"cookies": [{"name": "sid", "value": cid}]},
            }
        )
        time.sleep(0.02)  # each added a moment after the last
    for _ in range(5):
        lease = crawler.acquire(s, prefer_fresh=True)
        assert lease.credential.id == ids[-1]
        lease.release()
    # While the freshest is out, the next freshest.
    held = crawler.acquire(s, prefer_fresh=True)
    second = crawler.acquire(s, prefer_fresh=True)
    assert (held.credential.id, second.credential.id) == (ids[2], ids[1])
    held.release()
    second.release()
