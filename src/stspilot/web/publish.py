"""The publish journal in the JSON API: ``GET /api/domains/{domain}/journal`` lists the domain's
publish runs, newest first, each with its steps (intended, done, verified; who, when, the
provider's answer on failure). Read-only: changing DNS from the web is not offered yet."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from stspilot.store.journal import JournalRun, PublishJournal
from stspilot.web.api import CurrentUser, _readable_domain
from stspilot.web.auth import context

router = APIRouter(prefix="/api", tags=["publish"])


class PublishStepOut(BaseModel):
    seq: int
    kind: str = Field(description="tlsrpt, policy, sts, wait, remove-sts or remove-policy")
    title: str
    state: str = Field(description="planned, intended, done, verified or failed")
    target: dict[str, Any]
    outcome: dict[str, Any] | None
    error: str | None
    intended_at: datetime | None
    done_at: datetime | None
    verified_at: datetime | None


class PublishRunOut(BaseModel):
    id: int
    domain: str
    action: str
    actor: str
    reason: str
    dns: str = Field(description="the DNS provider (never its secrets)")
    destination: str
    state: str = Field(description="running, waiting, failed, done or abandoned")
    error: str | None
    created_at: datetime
    updated_at: datetime
    steps: list[PublishStepOut]


def step_title(target: Mapping[str, Any]) -> str:
    """A journal step in words (``set _mta-sts.example.com. TXT "v=STSv1; id=..."``)."""
    from stspilot.publish.plan import Step

    return Step.from_dict(target).title


def run_out(run: JournalRun) -> PublishRunOut:
    return PublishRunOut(
        id=run.id,
        domain=run.domain,
        action=run.action,
        actor=run.actor,
        reason=run.reason,
        dns=run.dns,
        destination=run.destination,
        state=run.state,
        error=run.error,
        created_at=run.created_at,
        updated_at=run.updated_at,
        steps=[
            PublishStepOut(
                seq=s.seq,
                kind=s.kind,
                title=step_title(s.target),
                state=s.state,
                target=dict(s.target),
                outcome=dict(s.outcome) if s.outcome else None,
                error=s.error,
                intended_at=s.intended_at,
                done_at=s.done_at,
                verified_at=s.verified_at,
            )
            for s in run.steps
        ],
    )


@router.get("/domains/{domain}/journal", response_model=list[PublishRunOut])
def publish_journal(
    request: Request,
    user: CurrentUser,
    domain: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[PublishRunOut]:
    """The domain's publish runs (``stspilot publish status``), newest first."""
    name = _readable_domain(request, user, domain)
    return [run_out(r) for r in PublishJournal(context(request).store).runs(name, limit=limit)]
