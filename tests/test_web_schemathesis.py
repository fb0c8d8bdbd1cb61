"""Property-based API testing: schemathesis generates requests from the app's own OpenAPI
description and checks that no input makes the server fail (5xx) and that successful answers
match the described schemas. Bounded: a few examples per operation, well under a minute."""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error, response_schema_conformance  # noqa: E402

from web_support import World  # noqa: E402

pytestmark = pytest.mark.db


def _spec() -> dict[str, Any]:
    """The description as the app publishes it (a throwaway app: no database is touched)."""
    from fastapi import FastAPI

    from stspilot.web import api, api_accounts, publish

    probe = FastAPI(title="stspilot", version="test")
    probe.include_router(api.router)
    probe.include_router(api_accounts.router)
    probe.include_router(publish.router)  # the journal, plans and their confirmation
    return probe.openapi()


# "Check now" probes the network: it is tested against the loopback lab in test_web_api.py.
schema = schemathesis.openapi.from_dict(_spec()).exclude(path="/api/domains/{domain}/check")


@schema.parametrize()
@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_never_fails(case: Any, world: World, app: Any) -> None:
    response = case.call(app=app, headers=world.auth("root"))
    assert response.status_code not in (401, 403)  # the request reached the handler as admin
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
