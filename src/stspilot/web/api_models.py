"""Request and response bodies of the JSON API (pydantic models: they make the OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from stspilot.store.accounts import DEFAULT_TOKEN_LIFETIME, TokenScope
from stspilot.sts.policy import MAX_AGE_LIMIT

Mode = Literal["testing", "enforce", "none"]
DomainName = Annotated[str, Field(min_length=3, max_length=253)]
MxList = Annotated[list[Annotated[str, Field(max_length=253)]], Field(max_length=64)]
MAX_TOKEN_DAYS = 3650  # longer is "never" (null), said out loud


class DomainCreate(BaseModel):
    domain: DomainName
    mode: Mode = "testing"
    mx: MxList = Field(default_factory=list)
    max_age: int | None = Field(default=None, ge=0, le=MAX_AGE_LIMIT)
    crlf: bool = False
    auto_sync_mx: bool = False
    tenant: str | None = Field(default=None, description="admins only: the owning tenant")


class DomainPatch(BaseModel):
    mode: Mode | None = None
    mx: MxList | None = None
    max_age: int | None = Field(default=None, ge=0, le=MAX_AGE_LIMIT)
    crlf: bool | None = None
    auto_sync_mx: bool | None = None


class Record(BaseModel):
    name: str
    type: str
    value: str


class Publish(BaseModel):
    domain: str
    policy_id: str
    policy_url: str
    txt_value: str
    records: list[Record]
    steps: list[str]


class DomainOut(BaseModel):
    domain: str
    tenant: str
    mode: str
    mx: list[str]
    max_age: int
    policy_id: str
    version: int
    policy: str
    crlf: bool
    auto_sync_mx: bool
    state: str
    remove_after: datetime | None
    pending_mx: list[str] | None
    created_at: datetime
    updated_at: datetime
    publish: Publish


class VersionOut(BaseModel):
    version: int
    policy_id: str
    mode: str
    mx: list[str]
    max_age: int
    policy: str
    reason: str
    actor: str
    created_at: datetime


class SyncIn(BaseModel):
    live_mx: MxList | None = Field(
        default=None, description="the live MX hosts; default: those of the latest stored check"
    )
    apply: bool | None = Field(default=None, description="default: the domain's auto_sync_mx")


class SyncOut(BaseModel):
    domain: str
    live_mx: list[str]
    current: list[str]
    proposed: list[str]
    added: list[str]
    removed: list[str]
    changed: bool
    applied: bool
    steps: list[str]
    hosted: DomainOut


class CheckOut(BaseModel):
    id: int
    domain: str
    observed_at: datetime
    stage: str
    mode: str | None
    worst_severity: str | None
    findings_count: int
    policy_id: str | None
    mx_set: list[str]


class AlertOut(BaseModel):
    """An open alert of the monitor (``docs/monitor.md``, Alerts)."""

    code: str
    severity: str
    message: str
    lasting: bool = Field(description="a condition (true) or a one-off event (false)")
    first_seen_at: datetime
    last_seen_at: datetime
    last_sent_at: datetime | None = Field(description="null: not delivered (yet)")


class CheckDetail(CheckOut):
    result: dict[str, Any]


class ReportOut(BaseModel):
    id: int
    organization_name: str
    report_id: str
    start: datetime
    end: datetime
    policy_domains: list[str]
    successful_sessions: int
    failed_sessions: int
    origin: str
    received_at: datetime
    authenticity: str = Field(
        default="", description="dkim, operator (file import), https or mail (unverified)"
    )


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    scope: TokenScope = Field(
        default="write",
        description="read: GET and HEAD only; write: everything the user may do",
    )
    expires_in_days: int | None = Field(
        default=DEFAULT_TOKEN_LIFETIME.days,
        ge=1,
        le=MAX_TOKEN_DAYS,
        description="days until the token stops working; null: it never expires. A token "
        "cannot make a token that outlives it.",
    )


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    scope: TokenScope
    created_at: datetime
    expires_at: datetime | None = Field(description="null: never expires")
    last_used_at: datetime | None = Field(
        description="last authentication with the token (updated at most once a minute); "
        "null: never used"
    )
    revoked: bool
    expired: bool


class TokenCreated(TokenOut):
    token: str = Field(description="shown once; only its hash is stored")


class TenantIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)


class TenantOut(BaseModel):
    name: str
    created_at: datetime


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=8, max_length=1024)
    tenant: str = Field(min_length=1, max_length=128)
    admin: bool = False
    tenant_admin: bool = Field(default=False, description="manages its own tenant's users")


class UserOut(BaseModel):
    name: str
    tenant: str
    is_admin: bool
    disabled: bool
    created_at: datetime
    tenant_admin: bool = False


# --- publishing (web/publish.py) ---------------------------------------------------------------

PublishAction = Literal["next", "rollback", "decommission", "resume", "hosted-sync"]


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


class PlanStepOut(BaseModel):
    kind: str = Field(description="tlsrpt, policy, sts, wait, remove-sts or remove-policy")
    title: str
    name: str = Field(description="the record's owner name, or the policy URL")
    value: str | None = Field(description="the record's value or the policy text; null: removed")
    seconds: int = Field(description="a wait's length, from the step before it")
    until: datetime | None = Field(description="a wait's fixed end")
    note: str


class GateOut(BaseModel):
    stage: str
    ready: bool = Field(description="the enforce gate passes")
    failing: list[str] = Field(description="the gate's criteria that fail")
    observed_at: datetime | None = Field(description="the stored check the verdict comes from")


class PublishPlanOut(BaseModel):
    """A plan to confirm: POST it back (action, planned_at, digest, force_reason) to run it."""

    domain: str
    action: PublishAction
    run_action: str = Field(description="what the journal will call the run")
    planned_at: datetime
    summary: str
    steps: list[PlanStepOut]
    notes: list[str]
    gate: GateOut | None
    refused: str | None = Field(description="why confirming is refused (the enforce gate)")
    reason: str = Field(description="what the journal records as the reason")
    dns: str
    destination: str
    resume_run: int | None
    force_reason: str
    digest: str = Field(description="SHA-256 of the plan; the confirmation must carry it")


class PublishConfirm(BaseModel):
    action: PublishAction
    planned_at: datetime
    digest: Annotated[str, Field(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")]
    force_reason: Annotated[str, Field(max_length=500)] = ""


class PublishStarted(BaseModel):
    run: PublishRunOut
    progress: str = Field(description="where the run's progress is read (the journal)")
