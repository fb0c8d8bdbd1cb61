"""The publish journal: every run of ``stspilot publish`` / ``rollout --apply`` and each of its
steps, written as intended before the step is carried out and as done and verified after.

A crash, Ctrl-C or provider outage leaves the journal pointing at the step to resume; the
journal is also the audit trail (who, what, when, verified) shown by ``publish status``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    select,
    update,
)

from stspilot.errors import StoreError
from stspilot.store.schema import Id, Json, UtcDateTime, metadata
from stspilot.store.transaction import transaction

if TYPE_CHECKING:
    from stspilot.store.api import Store

# Run states: running (a process works on it, or crashed while doing so), waiting (paused on a
# wait step), failed (a step failed; resumable), done, abandoned (superseded by a new plan).
OPEN_STATES = ("running", "waiting", "failed")
# Step states, in order: planned -> intended -> done -> verified (or failed).
STEP_STATES = ("planned", "intended", "done", "verified", "failed")

publish_runs = Table(
    "publish_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("domain", String(255), nullable=False),
    Column("action", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", Text(), nullable=False),  # --force's reason, or why the run was made
    Column("dns", String(255), nullable=False),  # the provider (no secrets)
    Column("destination", String(512), nullable=False),  # hosted | webroot:PATH | elsewhere
    Column("state", String(16), nullable=False),
    Column("error", Text()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)
Index(None, publish_runs.c.domain, publish_runs.c.id)

publish_steps = Table(
    "publish_steps",
    metadata,
    Column("run_id", Id, ForeignKey("publish_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer(), primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),
    Column("target", Json, nullable=False),  # publish.plan.Step.to_dict()
    Column("state", String(16), nullable=False),
    Column("outcome", Json),  # what was written/served, waited seconds, provider answer
    Column("error", Text()),
    Column("intended_at", UtcDateTime()),
    Column("done_at", UtcDateTime()),
    Column("verified_at", UtcDateTime()),
)


@dataclass(frozen=True, slots=True)
class JournalStep:
    run_id: int
    seq: int
    kind: str
    target: Mapping[str, Any]
    state: str
    outcome: Mapping[str, Any] | None
    error: str | None
    intended_at: datetime | None
    done_at: datetime | None
    verified_at: datetime | None


@dataclass(frozen=True, slots=True)
class JournalRun:
    id: int
    domain: str
    action: str
    actor: str
    reason: str
    dns: str
    destination: str
    state: str
    error: str | None
    created_at: datetime
    updated_at: datetime
    steps: tuple[JournalStep, ...] = ()

    @property
    def next_step(self) -> JournalStep | None:
        return next((s for s in self.steps if s.state != "verified"), None)


_RUN_COLUMNS = tuple(
    publish_runs.c[n]
    for n in (
        "id",
        "domain",
        "action",
        "actor",
        "reason",
        "dns",
        "destination",
        "state",
        "error",
        "created_at",
        "updated_at",
    )
)
_STEP_COLUMNS = tuple(
    publish_steps.c[n]
    for n in (
        "run_id",
        "seq",
        "kind",
        "target",
        "state",
        "outcome",
        "error",
        "intended_at",
        "done_at",
        "verified_at",
    )
)


class PublishJournal:
    """Runs and steps; one instance per ``Store``, safe across threads."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def _conn(self, *, write: bool) -> AbstractContextManager[Connection]:
        return transaction(self._engine, write=write)

    def start(
        self,
        domain: str,
        *,
        action: str,
        steps: Sequence[Mapping[str, Any]],
        actor: str,
        reason: str,
        dns: str,
        destination: str,
        now: datetime,
    ) -> JournalRun:
        """Write a new run with every step planned; an open run of ``domain`` is abandoned
        (the new plan was made from what is live now, so it supersedes it)."""
        with self._conn(write=True) as conn:
            conn.execute(
                update(publish_runs)
                .where(publish_runs.c.domain == domain, publish_runs.c.state.in_(OPEN_STATES))
                .values(state="abandoned", updated_at=now)
            )
            run_id = conn.execute(
                publish_runs.insert().returning(publish_runs.c.id),
                {
                    "domain": domain,
                    "action": action,
                    "actor": actor[:128],
                    "reason": reason,
                    "dns": dns[:255],
                    "destination": destination[:512],
                    "state": "running",
                    "created_at": now,
                    "updated_at": now,
                },
            ).scalar_one()
            if steps:
                conn.execute(
                    publish_steps.insert(),
                    [
                        {
                            "run_id": run_id,
                            "seq": i,
                            "kind": str(s["kind"]),
                            "target": dict(s),
                            "state": "planned",
                        }
                        for i, s in enumerate(steps)
                    ],
                )
            return self._load(conn, int(run_id))

    def start_many(self, runs: Sequence[Mapping[str, Any]], *, now: datetime) -> list[int]:
        """``start`` for many domains in one transaction (the bulk ``publish hosted-sync``):
        each of ``runs`` holds ``start``'s keyword values (domain, action, steps, actor, reason,
        dns, destination). Returns the new runs' ids, in order."""
        ids: list[int] = []
        with self._conn(write=True) as conn:
            domains = [str(r["domain"]) for r in runs]
            for i in range(0, len(domains), 500):
                conn.execute(
                    update(publish_runs)
                    .where(
                        publish_runs.c.domain.in_(domains[i : i + 500]),
                        publish_runs.c.state.in_(OPEN_STATES),
                    )
                    .values(state="abandoned", updated_at=now)
                )
            rows: list[dict[str, Any]] = []
            for r in runs:
                run_id = conn.execute(
                    publish_runs.insert().returning(publish_runs.c.id),
                    {
                        "domain": r["domain"],
                        "action": r["action"],
                        "actor": str(r["actor"])[:128],
                        "reason": r["reason"],
                        "dns": str(r["dns"])[:255],
                        "destination": str(r["destination"])[:512],
                        "state": "running",
                        "created_at": now,
                        "updated_at": now,
                    },
                ).scalar_one()
                ids.append(int(run_id))
                rows += [
                    {
                        "run_id": run_id,
                        "seq": i,
                        "kind": str(s["kind"]),
                        "target": dict(s),
                        "state": "planned",
                    }
                    for i, s in enumerate(r["steps"])
                ]
            if rows:
                conn.execute(publish_steps.insert(), rows)
        return ids

    def mark_steps(
        self,
        steps: Sequence[tuple[int, int]],
        state: str,
        *,
        now: datetime,
        outcomes: Sequence[Mapping[str, Any]] | None = None,
        error: str | None = None,
    ) -> None:
        """``mark_step`` for many (run id, seq) pairs in one transaction; ``outcomes`` one per
        pair when given."""
        if state not in STEP_STATES:
            raise StoreError(f"unknown step state {state!r}")
        if not steps:
            return
        c = publish_steps.c
        values: dict[str, Any] = {"state": state, "error": error}
        stamp = {"intended": "intended_at", "done": "done_at", "verified": "verified_at"}
        if state in stamp:
            values[stamp[state]] = now
        if outcomes is not None:
            values["outcome"] = bindparam("b_outcome", type_=c.outcome.type)
        stmt = (
            update(publish_steps)
            .where(c.run_id == bindparam("b_run"), c.seq == bindparam("b_seq"))
            .values(**values)
        )
        params = [
            {"b_run": run_id, "b_seq": seq}
            | ({} if outcomes is None else {"b_outcome": dict(outcomes[i])})
            for i, (run_id, seq) in enumerate(steps)
        ]
        run_ids = sorted({r for r, _ in steps})
        with self._conn(write=True) as conn:
            conn.execute(stmt, params)
            for i in range(0, len(run_ids), 500):
                conn.execute(
                    update(publish_runs)
                    .where(publish_runs.c.id.in_(run_ids[i : i + 500]))
                    .values(updated_at=now)
                )

    def finish_many(
        self, run_ids: Sequence[int], state: str, *, now: datetime, error: str | None = None
    ) -> None:
        """Mark the runs still ``running`` among ``run_ids`` ``state`` (done, failed): one
        superseded meanwhile (abandoned) stays so."""
        with self._conn(write=True) as conn:
            for i in range(0, len(run_ids), 500):
                conn.execute(
                    update(publish_runs)
                    .where(
                        publish_runs.c.id.in_(list(run_ids[i : i + 500])),
                        publish_runs.c.state == "running",
                    )
                    .values(state=state, error=error, updated_at=now)
                )

    def states(self, run_ids: Sequence[int]) -> dict[int, str]:
        """The state of each run of ``run_ids``."""
        out: dict[int, str] = {}
        with self._conn(write=False) as conn:
            for i in range(0, len(run_ids), 500):
                q = select(publish_runs.c.id, publish_runs.c.state).where(
                    publish_runs.c.id.in_(list(run_ids[i : i + 500]))
                )
                out.update({int(r): str(st) for r, st in conn.execute(q)})
        return out

    def _load(self, conn: Connection, run_id: int) -> JournalRun:
        row = conn.execute(select(*_RUN_COLUMNS).where(publish_runs.c.id == run_id)).first()
        if row is None:
            raise StoreError(f"no publish run {run_id}")
        steps = conn.execute(
            select(*_STEP_COLUMNS)
            .where(publish_steps.c.run_id == run_id)
            .order_by(publish_steps.c.seq)
        )
        values = [*row, tuple(JournalStep(*s) for s in steps)]
        return JournalRun(*values)

    def get(self, run_id: int) -> JournalRun:
        with self._conn(write=False) as conn:
            return self._load(conn, run_id)

    def open_run(self, domain: str) -> JournalRun | None:
        """The domain's run still to finish (running, waiting or failed), if any."""
        with self._conn(write=False) as conn:
            run_id = conn.execute(
                select(publish_runs.c.id)
                .where(publish_runs.c.domain == domain, publish_runs.c.state.in_(OPEN_STATES))
                .order_by(publish_runs.c.id.desc())
                .limit(1)
            ).scalar()
            return None if run_id is None else self._load(conn, int(run_id))

    def runs(self, domain: str, *, limit: int = 20) -> list[JournalRun]:
        """The domain's runs, newest first, with their steps."""
        with self._conn(write=False) as conn:
            ids = conn.execute(
                select(publish_runs.c.id)
                .where(publish_runs.c.domain == domain)
                .order_by(publish_runs.c.id.desc())
                .limit(limit)
            ).scalars()
            return [self._load(conn, int(i)) for i in list(ids)]

    def mark_step(
        self,
        run_id: int,
        seq: int,
        state: str,
        *,
        now: datetime,
        outcome: Mapping[str, Any] | None = None,
        target: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        if state not in STEP_STATES:
            raise StoreError(f"unknown step state {state!r}")
        values: dict[str, Any] = {"state": state, "error": error}
        stamp = {"intended": "intended_at", "done": "done_at", "verified": "verified_at"}
        if state in stamp:
            values[stamp[state]] = now
        if outcome is not None:
            values["outcome"] = dict(outcome)
        if target is not None:
            values["target"] = dict(target)
        with self._conn(write=True) as conn:
            conn.execute(
                update(publish_steps)
                .where(publish_steps.c.run_id == run_id, publish_steps.c.seq == seq)
                .values(**values)
            )
            conn.execute(
                update(publish_runs).where(publish_runs.c.id == run_id).values(updated_at=now)
            )

    def reopen(self, run_id: int, *, now: datetime) -> bool:
        """Mark an open run ``running`` again (resuming it); False when it is no longer open
        (a newer plan abandoned it, or it is done). One conditional UPDATE, so a run abandoned
        at the same moment is never revived."""
        with self._conn(write=True) as conn:
            done = conn.execute(
                update(publish_runs)
                .where(publish_runs.c.id == run_id, publish_runs.c.state.in_(OPEN_STATES))
                .values(state="running", error=None, updated_at=now)
            )
            return bool(done.rowcount)

    def mark_run(self, run_id: int, state: str, *, now: datetime, error: str | None = None) -> None:
        with self._conn(write=True) as conn:
            conn.execute(
                update(publish_runs)
                .where(publish_runs.c.id == run_id)
                .values(state=state, error=error, updated_at=now)
            )

    def served_policies(self, domain: str) -> list[tuple[int, datetime]]:
        """(max_age, verified at) of every policy step ever verified for ``domain``: how long
        senders may remember a policy this journal served (RFC 8461 §8.3; checklist G5.6)."""
        q = (
            select(publish_steps.c.target, publish_steps.c.verified_at)
            .join(publish_runs, publish_runs.c.id == publish_steps.c.run_id)
            .where(
                publish_runs.c.domain == domain,
                publish_steps.c.kind == "policy",
                publish_steps.c.state == "verified",
            )
        )
        with self._conn(write=False) as conn:
            return [(int(t.get("max_age", 0)), at) for t, at in conn.execute(q) if at]
