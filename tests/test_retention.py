"""Thinning old check history: the pure rule (store/retention.py), the store on both backends,
``stspilot monitor prune`` and the daily thinning in ``monitor run``."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest

from stspilot.check.run import CheckOptions
from stspilot.cli import main
from stspilot.monitor.loop import MonitorConfig, Tally, run_forever
from stspilot.store import Store
from stspilot.store.retention import CheckPoint, Retention, checks_to_drop

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
START = NOW - 60 * DAY  # 2026-09-23 12:00


def stage_at(when: datetime) -> str:
    """Testing, then fixing for days 10-19 after START (from the 3rd check of day 10), then
    testing again."""
    fixing_from = START + 10 * DAY + 12 * timedelta(hours=1)
    return "fixing" if fixing_from <= when < START + 20 * DAY else "testing"


def points(days: int = 60, per_day: int = 4) -> list[CheckPoint]:
    """``per_day`` checks a day (every 6 h from START) for ``days`` days."""
    out = []
    for n in range(days * per_day):
        at = START + n * timedelta(hours=24 / per_day)
        out.append(CheckPoint(n + 1, at, (stage_at(at), "testing")))
    return out


def test_keeps_recent_first_changes_and_one_a_day() -> None:
    all_points = points()
    drop = set(checks_to_drop(all_points, now=NOW, retention=Retention(30, 400)))
    cutoff = NOW - 30 * DAY
    recent = {p.id for p in all_points if p.observed_at >= cutoff}
    last_of_day = {p.observed_at.date(): p.id for p in all_points}  # later ones overwrite
    changes = [
        n for n in range(1, len(all_points)) if all_points[n].summary != all_points[n - 1].summary
    ]
    assert len(changes) == 2  # into fixing and back
    story = {all_points[n].id for n in changes} | {all_points[n - 1].id for n in changes}
    kept = {p.id for p in all_points} - drop
    assert kept == recent | {1} | set(last_of_day.values()) | story
    assert len(drop) == 30 * 4 - len(kept - recent) > 80  # most old checks go


def test_past_keep_daily_only_changes_and_the_first_remain() -> None:
    all_points = points()
    drop = set(checks_to_drop(all_points, now=NOW, retention=Retention(5, 5)))
    kept_old = [p for p in all_points if p.id not in drop and p.observed_at < NOW - 5 * DAY]
    summaries = [p.summary[0] for p in kept_old]  # type: ignore[index]
    assert summaries == ["testing", "testing", "fixing", "fixing", "testing"]
    assert kept_old[0].id == 1


def test_a_domain_no_longer_checked_keeps_its_latest_check() -> None:
    old = [p for p in points() if p.observed_at < NOW - 45 * DAY]  # nothing newer
    drop = set(checks_to_drop(old, now=NOW, retention=Retention(5, 5)))
    assert old[-1].id not in drop and old[0].id not in drop
    assert len(drop) == len(old) - 4  # first, latest, the change into fixing and the one before


def test_nothing_to_drop_in_a_young_or_unchanging_short_history() -> None:
    young = [p for p in points() if p.observed_at >= NOW - 30 * DAY]
    assert checks_to_drop(young, now=NOW, retention=Retention()) == []
    assert checks_to_drop([], now=NOW, retention=Retention()) == []


@pytest.mark.parametrize("args", [(0, 400), (30, 10)])
def test_retention_refuses_nonsense(args: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        Retention(*args)


# --- the store, the CLI and the monitor (both backends) -----------------------------------------


def seed(store: Store, domain: str = "example.com", days: int = 60) -> list[int]:
    ids = []
    for p in points(days):
        stage = str(p.summary[0])  # type: ignore[index]
        ids.append(
            store.save_check(
                domain=domain,
                observed_at=p.observed_at,
                stage=stage,
                mode="testing",
                worst_severity="error" if stage == "fixing" else None,
                findings_count=1 if stage == "fixing" else 0,
                policy_id="20260901000000",
                policy_sha256="ab" * 32,
                mx_set=["mx1.example.com"],
                result={"stage": stage, "padding": "x" * 200},
            )
        )
    return ids


def runs(store: Store, domain: str) -> list[tuple[str, datetime]]:
    """Each run of equal stages: (stage, first seen)."""
    out: list[tuple[str, datetime]] = []
    for c in store.check_history(domain):
        if not out or out[-1][0] != c.stage:
            out.append((c.stage, c.observed_at))
    return out


@pytest.mark.db
def test_store_thins_per_domain_and_keeps_the_story(store: Store) -> None:
    seed(store, "example.com")
    seed(store, "example.org", days=20)  # all of it older than 30 days
    domains = ("example.com", "example.org")
    before = {d: runs(store, d) for d in domains}
    total = sum(len(store.check_history(d, limit=100_000)) for d in domains)
    stopped = threading.Event()
    stopped.set()  # a stopping monitor: nothing more is thinned
    assert store.thin_checks(now=NOW, retention=Retention(30, 400), cancel=stopped) == (0, 0)
    seen, dropped = store.thin_checks(now=NOW, retention=Retention(30, 400), dry_run=True)
    assert sum(len(store.check_history(d, limit=100_000)) for d in domains) == total
    assert seen == 30 * 4 + 20 * 4 and dropped > 100
    assert store.thin_checks(now=NOW, retention=Retention(30, 400)) == (seen, dropped)
    assert sum(len(store.check_history(d, limit=100_000)) for d in domains) == total - dropped
    for d in domains:
        assert runs(store, d) == before[d]  # every stage change, seen when it was
        days = {c.observed_at.date() for c in store.check_history(d, limit=100_000)}
        assert len(days) == len(
            {p.observed_at.date() for p in points(60 if d.endswith("com") else 20)}
        )
    assert store.thin_checks(now=NOW, retention=Retention(30, 400))[1] == 0  # idempotent


@pytest.mark.db
def test_cli_prune(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open(store_url) as store:
        seed(store, days=45)
    argv = ["monitor", "prune", "--db", store_url, "--keep-all-days", "1", "--keep-daily-days"]
    assert main([*argv, "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would drop" in out
    assert main([*argv, "1"]) == 0
    assert "dropped" in capsys.readouterr().out
    with Store.open(store_url) as store:
        kept = [c.stage for c in store.check_history("example.com", limit=100_000)]
    assert kept[:5] == ["testing", "testing", "fixing", "fixing", "testing"]
    assert main([*argv, "0"]) == 3  # usage: below the minimum


@pytest.mark.db
def test_monitor_run_thins_at_start(store: Store) -> None:
    seed(store, days=45)
    before = len(store.check_history("example.com", limit=100_000))
    rounds: list[Tally] = []

    async def go() -> Tally:
        stop = asyncio.Event()
        config = MonitorConfig(poll=0.05, enroll_hosted=False)

        async def stop_soon() -> None:
            await asyncio.sleep(0.3)
            stop.set()

        stopper = asyncio.create_task(stop_soon())
        total = await run_forever(
            store,
            options=CheckOptions(),
            config=config,
            stop=stop,
            clock=lambda: NOW,
            on_round=rounds.append,
        )
        await stopper
        return total

    total = asyncio.run(go())
    after = len(store.check_history("example.com", limit=100_000))
    assert total.thinned == before - after > 0
    assert [r.thinned for r in rounds] == [total.thinned]  # once, not every round
