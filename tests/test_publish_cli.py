"""``stspilot publish``, ``publish status``, ``publish resume`` and ``rollout --apply`` against the
lab (BIND primary, Knot secondary, HTTPS web root), through the CLI's ``main``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from publish_support import ZONE, Lab, make_lab
from stspilot.check.run import check_domains
from stspilot.cli import main
from stspilot.lab.authdns import KEY_NAME
from stspilot.store.journal import PublishJournal

pytestmark = pytest.mark.slow


@pytest.fixture
async def lab(tmp_path: Path, store_url: str) -> AsyncIterator[Lab]:
    async for made in make_lab(tmp_path, store_url):
        yield made


def write_config(lab: Lab, folder: Path, *, mode: int = 0o600, timeout: float = 10) -> Path:
    secret = folder / "tsig.key"
    secret.write_text(lab.world.secret + "\n")
    secret.chmod(mode)
    config = folder / "publish.toml"
    config.write_text(
        f"""
[zones."{ZONE}"]
provider = "rfc2136"
server = "{lab.world.primary.address}"
port = {lab.world.port}
key_name = "{KEY_NAME}"
key_secret_file = "{secret}"
timeout = {timeout}

[domains."{ZONE}"]
policy = "webroot:{lab.webroot}"
verify_timeout = 20
"""
    )
    return config


def net_args(lab: Lab) -> list[str]:
    return [
        "--nameserver",
        f"{lab.check.nameserver}:{lab.check.dns_port}",
        "--ca-file",
        str(lab.check.ca_file),
        "--port-map",
        f"443={lab.check.port_map[443]}",
    ]


async def cli(*argv: str) -> int:
    """Run the CLI in a thread (it runs its own event loop) while the lab serves in ours."""
    return await asyncio.to_thread(main, list(argv))


def db(lab: Lab) -> str:
    return lab.store.engine.url.render_as_string(hide_password=False)


async def test_publish_status_and_the_result_a_sender_sees(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(lab, tmp_path)
    code = await cli(
        "publish", ZONE, "--mode", "testing", "--max-age", "86400", "--yes",
        "--config", str(config), "--db", db(lab), *net_args(lab),
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    (seen,) = await check_domains([ZONE], options=lab.check)
    assert seen.policy is not None and seen.policy.mode == "testing"
    assert seen.tlsrpt.record is not None and seen.sts_record is not None
    assert await cli("publish", "status", ZONE, "--json", "--db", db(lab)) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert run["state"] == "done" and run["action"] == "testing"
    assert [s["kind"] for s in run["steps"]] == ["tlsrpt", "policy", "sts"]
    assert all(s["state"] == "verified" and s["verified_at"] for s in run["steps"])
    assert run["steps"][2]["target"]["value"] == f"v=STSv1; id={seen.sts_record.id}"
    assert lab.world.secret not in json.dumps(run) and lab.world.secret not in out.err
    # Again without --mode: the live mode stays, and nothing differs, so nothing is written.
    again = await cli("publish", ZONE, "--yes", "--config", str(config), "--db", db(lab),
                      *net_args(lab))  # fmt: skip
    assert again == 0 and "nothing to change" in capsys.readouterr().out
    assert len(PublishJournal(lab.store).runs(ZONE)) == 1


async def test_a_secret_file_others_can_read_is_refused(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(lab, tmp_path, mode=0o640)
    code = await cli(
        "publish", ZONE, "--yes", "--config", str(config), "--db", db(lab), *net_args(lab)
    )
    assert code == 4
    err = capsys.readouterr().err
    assert "readable by others" in err and "chmod 600" in err
    assert PublishJournal(lab.store).runs(ZONE) == []


async def test_an_unreachable_primary_exits_4_before_anything_is_planned(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(lab, tmp_path, timeout=0.5)
    lab.world.primary.pause()
    try:
        code = await cli(
            "publish", ZONE, "--yes", "--config", str(config), "--db", db(lab), *net_args(lab)
        )
    finally:
        lab.world.primary.resume()
    assert code == 4
    err = capsys.readouterr().err
    assert "no answer within 0.5s" in err and len(err.strip().splitlines()) == 1
    assert PublishJournal(lab.store).runs(ZONE) == []


async def test_a_failing_step_exits_4_naming_it_and_resume_finishes(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(lab, tmp_path)
    args = ["--config", str(config), "--db", db(lab), *net_args(lab)]
    lab.webroot.write_text("a file where the web root should be")  # the policy cannot be written
    assert await cli("publish", ZONE, "--yes", *args) == 4
    err = capsys.readouterr().err
    assert "step 2 (serve the policy at https://mta-sts.example.test/" in err
    assert "resume: stspilot publish resume example.test" in err
    run = PublishJournal(lab.store).runs(ZONE)[0]
    assert run.state == "failed"
    assert [s.state for s in run.steps] == ["verified", "failed", "planned"]
    (seen,) = await check_domains([ZONE], options=lab.check)
    assert seen.sts_record is None  # never an id without its policy
    lab.webroot.unlink()
    assert await cli("publish", "resume", ZONE, *args) == 0
    (seen,) = await check_domains([ZONE], options=lab.check)
    assert seen.sts_record is not None and seen.policy is not None
    assert PublishJournal(lab.store).runs(ZONE)[0].state == "done"
    capsys.readouterr()
    assert await cli("publish", "resume", ZONE, *args) == 4  # nothing left to resume
    assert "no unfinished publish run" in capsys.readouterr().err


async def test_rollout_apply_gate_force_rollback_and_decommission(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(lab, tmp_path)
    common = ["--config", str(config), "--db", db(lab), *net_args(lab)]
    # none -> reporting -> testing, one stage per --apply.
    assert await cli("rollout", ZONE, "--apply", "--yes", *common) == 0
    (seen,) = await check_domains([ZONE], options=lab.check)
    assert seen.tlsrpt.record is not None and seen.sts_record is None
    assert await cli("rollout", ZONE, "--apply", "--yes", *common) == 0
    (seen,) = await check_domains([ZONE], options=lab.check)
    assert seen.policy is not None and seen.policy.mode == "testing"
    testing_id = seen.sts_record.id if seen.sts_record else ""
    capsys.readouterr()
    # No reports: the gate fails, so enforce is refused and nothing changes.
    assert await cli("rollout", ZONE, "--apply", "--to", "enforce", "--yes", *common) == 2
    assert "refused" in capsys.readouterr().err
    (seen,) = await check_domains([ZONE], options=lab.check)
    assert seen.sts_record is not None and seen.sts_record.id == testing_id
    # --force with a reason: carried out, and the journal keeps the reason.
    code = await cli(
        "rollout", ZONE, "--apply", "--to", "enforce", "--yes", "--force", "pilot customer",
        *common,
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (seen,) = await check_domains([ZONE], options=lab.check)
    assert seen.policy is not None and seen.policy.mode == "enforce"
    newest = PublishJournal(lab.store).runs(ZONE)[0]
    assert newest.action == "enforce" and "pilot customer" in newest.reason
    # Fast rollback, no questions.
    assert await cli("rollout", ZONE, "--apply", "--to", "testing", "--yes", *common) == 0
    (seen,) = await check_domains([ZONE], options=lab.check)
    assert seen.policy is not None and seen.policy.mode == "testing"
    assert PublishJournal(lab.store).runs(ZONE)[0].action == "rollback"
    # Decommission: mode none with a new id, then the run waits for the longest max_age.
    assert await cli("rollout", ZONE, "--apply", "--to", "none", "--yes", *common) == 0
    (seen,) = await check_domains([ZONE], options=lab.check)
    assert seen.policy is not None and seen.policy.mode == "none" and seen.sts_record is not None
    run = PublishJournal(lab.store).runs(ZONE)[0]
    assert run.action == "decommission" and run.state == "waiting"
    assert run.next_step is not None and run.next_step.kind == "wait"
    capsys.readouterr()
    assert await cli("publish", "status", ZONE, "--db", db(lab)) == 0
    status = capsys.readouterr().out
    assert "decommission waiting" in status and "pilot customer" in status


def test_publish_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", "--help"]) == 0
    out = capsys.readouterr().out
    assert "status " in out and "resume " in out and "journal" in out
