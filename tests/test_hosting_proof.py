"""Proof of control before a hosted name is served (issue 15, Medium), against ``stspilot
serve`` asking the lab's DNS server: a tenant user's name is served only once its TXT
challenge is published; a name another tenant hosts is answered exactly like a free one;
public suffixes, IP literals and the service's own names are refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from caddy_world import ThreadedDns
from serve_process import Served, serving
from stspilot.lab.dns_server import Record
from stspilot.store import Store
from stspilot.store.accounts import Accounts
from stspilot.store.hosting import HostedPolicies
from stspilot.web.proof import challenge
from stspilot.web.settings import WebSettings

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
SECRET = "hosting-proof-secret-0123456789"
APP = "app.stspilot.test"


@pytest.fixture
def world(store_url: str, store: Store) -> Iterator[tuple[Served, str]]:
    accounts = Accounts(store)
    acme = accounts.add_tenant("acme", now=NOW)
    globex = accounts.add_tenant("globex", now=NOW)
    user = accounts.add_user("alice", "x" * 16, tenant="acme", now=NOW, password_n=2**10)
    token, _ = accounts.create_token(user.id, "tests", now=NOW)
    HostedPolicies(store).add(
        "taken.test", tenant_id=globex.id, mode="testing", mx=["mx.taken.test"], now=NOW
    )
    proof = challenge(WebSettings(secret_key=SECRET.encode()), acme.id, "proven.test")
    dns = ThreadedDns([Record(proof.name, "TXT", f'"{proof.value}"')])
    port = dns.start()
    env = {
        "STSPILOT_SECRET_KEY": SECRET,
        "STSPILOT_NAMESERVER": f"127.0.0.1:{port}",
        "STSPILOT_PUBLIC_HOSTS": APP,
    }
    try:
        with serving(store_url, env) as served:
            yield served, token
    finally:
        dns.stop()


def add(served: Served, token: str, domain: str) -> httpx.Response:
    return httpx.post(
        f"{served.base}/api/domains",
        json={"domain": domain, "mode": "testing", "mx": [f"mx.{domain}"]},
        headers={"authorization": f"Bearer {token}", "host": APP},
        timeout=30,
    )


def policy(served: Served, domain: str) -> httpx.Response:
    return httpx.get(
        f"{served.base}/.well-known/mta-sts.txt", headers={"host": f"mta-sts.{domain}"}, timeout=10
    )


def shape(response: httpx.Response, domain: str) -> Any:
    """The answer with the name and its token blanked: what is left must not differ."""
    body = response.json()
    body["domain"] = "*"
    body["detail"] = body["detail"].replace(domain, "*")
    body["record"] = {"name": "*", "type": body["record"]["type"], "value": "*"}
    return response.status_code, body


def test_a_name_is_served_only_after_its_proof(world: tuple[Served, str]) -> None:
    served, token = world
    pending = add(served, token, "unproven.test")
    assert pending.status_code == 202, pending.text
    record = pending.json()["record"]
    assert record["name"] == "_stspilot-challenge.unproven.test."
    assert record["value"].startswith("stspilot-verify=")
    assert policy(served, "unproven.test").status_code == 404
    done = add(served, token, "proven.test")
    assert done.status_code == 201, done.text
    assert "mx: mx.proven.test" in policy(served, "proven.test").text


def test_another_tenants_name_is_answered_like_a_free_one(world: tuple[Served, str]) -> None:
    served, token = world
    taken = add(served, token, "taken.test")
    free = add(served, token, "free.test")
    assert shape(taken, "taken.test") == shape(free, "free.test")
    assert "mx: mx.taken.test" in policy(served, "taken.test").text  # still globex's


def test_names_never_hostable(world: tuple[Served, str]) -> None:
    """Public suffixes (ICANN and private sections), IP literals, the app's own name."""
    served, token = world
    for name in ("co.uk", "github.io", "192.0.2.1", APP):
        refused = add(served, token, name)
        assert refused.status_code in (400, 422), (name, refused.status_code, refused.text)
