"""Hosted MTA-STS policies: each domain's current policy, every version with its ``id``, the
pending MX sync proposal and the decommission state, in the ``Store``'s database.

Every change of what is served makes a new version with a fresh ``id`` (RFC 8461 §3.1: senders
only re-fetch when the TXT ``id`` changes) and bumps one global generation counter, which the
web app's policy cache compares to stay correct across replicas.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    select,
)

from stspilot.errors import ConfigError
from stspilot.store.accounts import Conflict, NotFound, tenants
from stspilot.store.hosting_models import (
    POLICY_HOST_PREFIX,
    HostedDomain,
    MxSync,
    PolicyVersion,
    ServedPolicy,
    check_domain_name,
    check_mx_patterns,
    plan_mx_sync,
    render_policy,
)
from stspilot.store.schema import Id, Json, UtcDateTime, metadata
from stspilot.store.transaction import transaction
from stspilot.sts.names import fold_name
from stspilot.sts.policy import DEFAULT_MAX_AGE, check_max_age
from stspilot.sts.records import new_policy_id

if TYPE_CHECKING:
    from stspilot.store.api import Store

ACTIVE, DECOMMISSIONING = "active", "decommissioning"
__all__ = [
    "ACTIVE",
    "DECOMMISSIONING",
    "POLICY_HOST_PREFIX",
    "HostedDomain",
    "HostedPolicies",
    "MxSync",
    "PolicyVersion",
    "ServedPolicy",
    "check_domain_name",
    "check_mx_patterns",
    "plan_mx_sync",
    "render_policy",
]

hosted_domains = Table(
    "hosted_domains",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("domain", String(255), nullable=False, unique=True),
    Column("mode", String(16), nullable=False),
    Column("mx", Json, nullable=False),
    Column("max_age", Integer(), nullable=False),
    Column("policy_id", String(32), nullable=False),
    Column("version", Integer(), nullable=False),
    # The exact bytes served (RFC 8461 §3.3), rendered once per change, not per request.
    Column("policy_text", Text(), nullable=False),
    Column("crlf", Boolean(), nullable=False),
    Column("auto_sync_mx", Boolean(), nullable=False),
    Column("state", String(16), nullable=False),
    Column("remove_after", UtcDateTime()),
    Column("pending_mx", Json),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)
Index(None, hosted_domains.c.tenant_id)

policy_versions = Table(
    "policy_versions",
    metadata,
    Column("domain_id", Id, ForeignKey("hosted_domains.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer(), primary_key=True, autoincrement=False),
    Column("policy_id", String(32), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("mx", Json, nullable=False),
    Column("max_age", Integer(), nullable=False),
    Column("policy_text", Text(), nullable=False),
    Column("reason", String(512), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

# One row (id 1): bumped by every change of any served policy.
hosting_generation = Table(
    "hosting_generation",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=False),
    Column("value", BigInteger(), nullable=False),
)

_DOMAIN_COLUMNS = (
    hosted_domains.c.id,
    hosted_domains.c.domain,
    hosted_domains.c.tenant_id,
    tenants.c.name,
    hosted_domains.c.mode,
    hosted_domains.c.mx,
    hosted_domains.c.max_age,
    hosted_domains.c.policy_id,
    hosted_domains.c.version,
    hosted_domains.c.policy_text,
    hosted_domains.c.crlf,
    hosted_domains.c.auto_sync_mx,
    hosted_domains.c.state,
    hosted_domains.c.remove_after,
    hosted_domains.c.pending_mx,
    hosted_domains.c.created_at,
    hosted_domains.c.updated_at,
)


def _hosted(row: Any) -> HostedDomain:
    values = list(row)
    values[5] = tuple(values[5])
    values[14] = None if values[14] is None else tuple(values[14])
    return HostedDomain(*values)


class HostedPolicies:
    """Hosted domains and their policy history in the ``Store``'s database."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def _conn(self, *, write: bool) -> AbstractContextManager[Connection]:
        return transaction(
            self._engine,
            write=write,
            on_conflict=lambda e: Conflict(f"conflicting change: {e.orig}"),
        )

    @staticmethod
    def _bump(conn: Connection) -> None:
        done = conn.execute(
            hosting_generation.update()
            .where(hosting_generation.c.id == 1)
            .values(value=hosting_generation.c.value + 1)
        )
        if done.rowcount == 0:
            conn.execute(hosting_generation.insert(), {"id": 1, "value": 1})

    def _load(self, conn: Connection, domain: str) -> HostedDomain | None:
        q = (
            select(*_DOMAIN_COLUMNS)
            .join(tenants, tenants.c.id == hosted_domains.c.tenant_id)
            .where(hosted_domains.c.domain == domain)
        )
        row = conn.execute(q).first()
        return None if row is None else _hosted(row)

    def _record(
        self, conn: Connection, hosted: HostedDomain, *, reason: str, actor: str, now: datetime
    ) -> None:
        conn.execute(
            policy_versions.insert(),
            {
                "domain_id": hosted.id,
                "version": hosted.version,
                "policy_id": hosted.policy_id,
                "mode": hosted.mode,
                "mx": list(hosted.mx),
                "max_age": hosted.max_age,
                "policy_text": hosted.policy_text,
                "reason": reason[:512],
                "actor": actor[:128],
                "created_at": now,
            },
        )
        self._bump(conn)

    # -- reads --------------------------------------------------------------------------------

    def get(self, domain: str) -> HostedDomain | None:
        with self._conn(write=False) as conn:
            return self._load(conn, fold_name(domain))

    def require(self, domain: str) -> HostedDomain:
        found = self.get(domain)
        if found is None:
            raise NotFound(f"{domain!r} is not a hosted domain")
        return found

    def list_domains(self, tenant_id: int | None = None) -> list[HostedDomain]:
        q = select(*_DOMAIN_COLUMNS).join(tenants, tenants.c.id == hosted_domains.c.tenant_id)
        if tenant_id is not None:
            q = q.where(hosted_domains.c.tenant_id == tenant_id)
        with self._conn(write=False) as conn:
            return [_hosted(row) for row in conn.execute(q.order_by(hosted_domains.c.domain))]

    def history(self, domain: str) -> list[PolicyVersion]:
        """Every version served for ``domain``, newest first."""
        hosted = self.require(domain)
        v = policy_versions.c
        q = (
            select(
                v.version,
                v.policy_id,
                v.mode,
                v.mx,
                v.max_age,
                v.policy_text,
                v.reason,
                v.actor,
                v.created_at,
            )
            .where(v.domain_id == hosted.id)
            .order_by(v.version.desc())
        )
        with self._conn(write=False) as conn:
            rows = conn.execute(q).all()
        return [PolicyVersion(r[0], r[1], r[2], tuple(r[3]), *r[4:]) for r in rows]

    def served_policy(self, host: str) -> ServedPolicy | None:
        """The policy for ``Host: mta-sts.<domain>`` (any case, no port), else None."""
        name = fold_name(host)
        if not name.startswith(POLICY_HOST_PREFIX):
            return None
        h = hosted_domains.c
        q = select(h.domain, h.policy_id, h.version, h.policy_text).where(
            h.domain == name[len(POLICY_HOST_PREFIX) :]
        )
        with self._conn(write=False) as conn:
            row = conn.execute(q).first()
        return None if row is None else ServedPolicy(*row)

    def is_policy_host(self, host: str) -> bool:
        """Whether ``host`` is ``mta-sts.`` + a hosted domain (Caddy's on-demand TLS ``ask``)."""
        return self.served_policy(host) is not None

    def generation(self) -> int:
        """A counter that changes whenever any served policy changes."""
        with self._conn(write=False) as conn:
            value = conn.execute(
                select(func.coalesce(func.max(hosting_generation.c.value), 0))
            ).scalar_one()
        return int(value)

    # -- changes ------------------------------------------------------------------------------

    def add(
        self,
        domain: str,
        *,
        tenant_id: int,
        mode: str,
        mx: Sequence[str],
        now: datetime,
        max_age: int | None = None,
        crlf: bool = False,
        auto_sync_mx: bool = False,
        actor: str = "",
    ) -> HostedDomain:
        """Host ``domain``'s policy: version 1 with a fresh ``id``."""
        name = check_domain_name(domain)
        patterns = check_mx_patterns(mode, mx)
        age = check_max_age(DEFAULT_MAX_AGE.get(mode, 86_400) if max_age is None else max_age)
        text = render_policy(mode, patterns, age, crlf=crlf)
        policy_id = new_policy_id(now)
        with self._conn(write=True) as conn:
            if conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is None:
                raise NotFound(f"no tenant {tenant_id}")
            if self._load(conn, name) is not None:
                raise Conflict(f"{name} is hosted already")
            row = {
                "tenant_id": tenant_id,
                "domain": name,
                "mode": mode,
                "mx": list(patterns),
                "max_age": age,
                "policy_id": policy_id,
                "version": 1,
                "policy_text": text,
                "crlf": crlf,
                "auto_sync_mx": auto_sync_mx,
                "state": ACTIVE,
                "remove_after": None,
                "pending_mx": None,
                "created_at": now,
                "updated_at": now,
            }
            conn.execute(hosted_domains.insert(), row)
            hosted = self._load(conn, name)
            assert hosted is not None
            self._record(conn, hosted, reason="hosted", actor=actor, now=now)
        return hosted

    def update(
        self,
        domain: str,
        *,
        now: datetime,
        mode: str | None = None,
        mx: Sequence[str] | None = None,
        max_age: int | None = None,
        crlf: bool | None = None,
        auto_sync_mx: bool | None = None,
        reason: str = "edited",
        actor: str = "",
    ) -> HostedDomain:
        """Change the policy (a new version and ``id`` when the served text changes).

        A change to a domain being decommissioned brings it back to active.
        """
        with self._conn(write=True) as conn:
            current = self._load(conn, fold_name(domain))
            if current is None:
                raise NotFound(f"{domain!r} is not a hosted domain")
            return self._change(
                conn,
                current,
                now=now,
                mode=mode,
                mx=mx,
                max_age=max_age,
                crlf=crlf,
                auto_sync_mx=auto_sync_mx,
                reason=reason,
                actor=actor,
            )

    def _change(
        self,
        conn: Connection,
        current: HostedDomain,
        *,
        now: datetime,
        mode: str | None,
        mx: Sequence[str] | None,
        max_age: int | None,
        crlf: bool | None,
        auto_sync_mx: bool | None,
        reason: str,
        actor: str,
        state: str = ACTIVE,
        remove_after: datetime | None = None,
    ) -> HostedDomain:
        new_mode = current.mode if mode is None else mode
        patterns = check_mx_patterns(new_mode, current.mx if mx is None else mx)
        age = check_max_age(current.max_age if max_age is None else max_age)
        new_crlf = current.crlf if crlf is None else crlf
        text = render_policy(new_mode, patterns, age, crlf=new_crlf)
        values: dict[str, Any] = {"updated_at": now}
        if auto_sync_mx is not None:
            values["auto_sync_mx"] = auto_sync_mx
        served_changes = text != current.policy_text or state != current.state
        if served_changes:
            seen = set(
                conn.execute(
                    select(policy_versions.c.policy_id).where(
                        policy_versions.c.domain_id == current.id
                    )
                ).scalars()
            )
            values |= {
                "mode": new_mode,
                "mx": list(patterns),
                "max_age": age,
                "crlf": new_crlf,
                "policy_text": text,
                "version": current.version + 1,
                # RFC 8461 §3.1: a changed policy needs an id senders have not seen.
                "policy_id": new_policy_id(now, previous=current.policy_id, avoid=seen),
                "state": state,
                "remove_after": remove_after,
                "pending_mx": None,
            }
        conn.execute(
            hosted_domains.update().where(hosted_domains.c.id == current.id).values(**values)
        )
        hosted = self._load(conn, current.domain)
        assert hosted is not None
        if served_changes:
            self._record(conn, hosted, reason=reason, actor=actor, now=now)
        return hosted

    def sync_mx(
        self,
        domain: str,
        live_mx: Sequence[str],
        *,
        now: datetime,
        apply: bool | None = None,
        actor: str = "",
    ) -> MxSync:
        """Compare the policy with the live MX set; propose the new patterns, or apply them
        when ``apply`` (default: the domain's ``auto_sync_mx``).

        Applying only changes the served policy (and its ``id``): the TXT ``id`` is published
        after it, never before (RFC 8461 §8.1-8.2: the never-orphan order).
        """
        live = tuple(sorted({fold_name(h) for h in live_mx} - {""}))
        if not live:
            raise ConfigError("no live MX hosts given: refusing to sync a policy to nothing")
        with self._conn(write=True) as conn:
            current = self._load(conn, fold_name(domain))
            if current is None:
                raise NotFound(f"{domain!r} is not a hosted domain")
            if current.state != ACTIVE:
                raise Conflict(f"{current.domain} is being decommissioned")
            proposed = check_mx_patterns(current.mode, plan_mx_sync(current.mx, live))
            do_apply = current.auto_sync_mx if apply is None else apply
            if proposed == current.mx:
                if current.pending_mx is not None:
                    conn.execute(
                        hosted_domains.update()
                        .where(hosted_domains.c.id == current.id)
                        .values(pending_mx=None)
                    )
                    current = replace(current, pending_mx=None)
                return MxSync(current.domain, live, current.mx, proposed, False, current)
            if do_apply:
                added = [p for p in proposed if p not in current.mx]
                removed = [p for p in current.mx if p not in proposed]
                why = "mx sync:" + "".join(f" +{p}" for p in added)
                why += "".join(f" -{p}" for p in removed)
                hosted = self._change(
                    conn,
                    current,
                    now=now,
                    mode=None,
                    mx=proposed,
                    max_age=None,
                    crlf=None,
                    auto_sync_mx=None,
                    reason=why,
                    actor=actor,
                )
                return MxSync(current.domain, live, current.mx, proposed, True, hosted)
            conn.execute(
                hosted_domains.update()
                .where(hosted_domains.c.id == current.id)
                .values(pending_mx=list(proposed), updated_at=now)
            )
            hosted = replace(current, pending_mx=proposed, updated_at=now)
            return MxSync(current.domain, live, current.mx, proposed, False, hosted)

    def apply_pending_mx(self, domain: str, *, now: datetime, actor: str = "") -> HostedDomain:
        """Apply the proposal of the last ``sync_mx`` that was not applied."""
        current = self.require(domain)
        if current.pending_mx is None:
            raise Conflict(f"{current.domain} has no pending MX change")
        return self.update(
            current.domain, now=now, mx=current.pending_mx, reason="mx sync applied", actor=actor
        )

    def decommission(self, domain: str, *, now: datetime, actor: str = "") -> HostedDomain:
        """Serve ``mode: none`` with a new ``id`` until every policy cached by a sender has
        expired (the longest ``max_age`` ever served), then allow removal (RFC 8461 §8.3)."""
        with self._conn(write=True) as conn:
            current = self._load(conn, fold_name(domain))
            if current is None:
                raise NotFound(f"{domain!r} is not a hosted domain")
            if current.state == DECOMMISSIONING:
                return current
            longest = conn.execute(
                select(func.max(policy_versions.c.max_age)).where(
                    policy_versions.c.domain_id == current.id
                )
            ).scalar_one()
            wait = max(int(longest or 0), current.max_age)
            return self._change(
                conn,
                current,
                now=now,
                mode="none",
                mx=None,
                max_age=min(current.max_age, DEFAULT_MAX_AGE["none"]),
                crlf=None,
                auto_sync_mx=False,
                reason="decommission: mode none until cached policies expire",
                actor=actor,
                state=DECOMMISSIONING,
                remove_after=now + timedelta(seconds=wait),
            )

    def remove(self, domain: str, *, now: datetime, force: bool = False) -> None:
        """Stop hosting ``domain``: only once its decommission wait is over (or ``force``)."""
        with self._conn(write=True) as conn:
            current = self._load(conn, fold_name(domain))
            if current is None:
                raise NotFound(f"{domain!r} is not a hosted domain")
            if not force:
                if current.state != DECOMMISSIONING or current.remove_after is None:
                    raise Conflict(
                        f"decommission {current.domain} first: senders cache its policy for up "
                        f"to {current.max_age} s, and removing it now leaves them an orphan"
                    )
                if now < current.remove_after:
                    raise Conflict(
                        f"{current.domain} can be removed after "
                        f"{current.remove_after.isoformat()} (cached policies still live)"
                    )
            # Explicitly: SQLite enforces ON DELETE CASCADE only with PRAGMA foreign_keys.
            conn.execute(policy_versions.delete().where(policy_versions.c.domain_id == current.id))
            conn.execute(hosted_domains.delete().where(hosted_domains.c.id == current.id))
            self._bump(conn)
