"""JSON bodies that are not valid Unicode get a 4xx from ``stspilot serve``, never a 500
(issue 15, Low): raw invalid UTF-8, and lone surrogates escaped inside JSON strings."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from serve_process import serving
from stspilot.store import Store
from stspilot.store.accounts import Accounts
from stspilot.store.hosting import HostedPolicies

NOW = datetime.now(UTC)
BODIES = [
    b'{"domain": "\xff\xfe.test", "mx": ["mx.a.test"]}',
    b'{"domain": "a\\ud800.test", "mx": ["mx.\\udc80"]}',
    b'{"mode": "enforce", "mx": ["\\ud83d"]}',
    b'{"name": "\\udfff", "scope": "read", "mode": "\\udfff"}',
    b"\xc3\x28",
]


@pytest.mark.parametrize("admin", [False, True])
def test_invalid_unicode_in_json_is_a_client_error(
    store_url: str, store: Store, admin: bool
) -> None:
    accounts = Accounts(store)
    tenant = accounts.add_tenant("acme", now=NOW)
    user = accounts.add_user(
        "alice", "x" * 16, tenant="acme", now=NOW, admin=admin, password_n=2**10
    )
    token, _ = accounts.create_token(user.id, "t", now=NOW)
    HostedPolicies(store).add(
        "acme.test", tenant_id=tenant.id, mode="testing", mx=["mx.acme.test"], now=NOW
    )
    headers = {
        "authorization": f"Bearer {token}",
        "host": "app.test",
        "content-type": "application/json",
    }
    with serving(store_url, {"STSPILOT_PUBLIC_HOSTS": "app.test"}) as served:
        for method, path in (
            ("POST", "/api/domains"),
            ("PATCH", "/api/domains/acme.test"),
            ("POST", "/api/tokens"),
        ):
            for body in BODIES:
                r = httpx.request(
                    method, f"{served.base}{path}", content=body, headers=headers, timeout=30
                )
                assert 400 <= r.status_code < 500, (method, path, body, r.status_code, r.text)
