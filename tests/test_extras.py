"""``pip install stspilot`` is the checker: the service and the lab are extras, and a command
that needs one says which in one line (exit 4). Proven in a subprocess where the extras'
packages cannot be imported, as in a check-only install."""

from __future__ import annotations

import asyncio
import json
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from stspilot.cli.extras import EXTRAS
from stspilot.lab.scenarios import BY_DOMAIN
from stspilot.lab.world import Lab

pytestmark = pytest.mark.asyncio(loop_scope="module")
REPO = Path(__file__).resolve().parents[1]
BLOCKED = sorted({m for extra in ("serve", "lab") for m in EXTRAS[extra]})

# Runs the CLI with the extras' packages made unimportable; prints the modules it loaded.
_RUN = f"""
import importlib.abc, json, sys
BLOCKED = {BLOCKED!r}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
from stspilot.cli import main
code = main(json.loads(sys.argv[1]))
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(BLOCKED))
print("\\nLOADED " + json.dumps(loaded), file=sys.stderr)
sys.exit(code)
"""


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _RUN, json.dumps(list(args)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab([BY_DOMAIN["enforce-ok.test"]]) as world:
        yield world


async def test_check_runs_without_the_extras(lab: Lab) -> None:
    info = lab.info
    code, out, err = await _cli(
        "check", "--nameserver", f"{info.nameserver}:{info.dns_port}",
        "--ca-file", str(info.ca_file),
        "--port-map", f"443={info.https_port},25={info.smtp_port}",
        "--json", "enforce-ok.test",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["domains"][0]["stage"] == "enforce"
    assert "LOADED []" in err  # nothing of the service or the lab was imported


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["serve"], "serve"),
        (["receive"], "serve"),
        (["monitor", "run", "--once", "--webhook", "http://127.0.0.1:9/"], "serve"),
        (["lab", "up"], "lab"),
        (["lab", "scenarios"], "lab"),
    ],
)
async def test_a_command_that_needs_an_extra_names_it(
    tmp_path: Path, args: list[str], extra: str
) -> None:
    db = ["--db", str(tmp_path / "s.sqlite3")] if args[0] in ("serve", "receive", "monitor") else []
    code, _, err = await _cli(*args, *db)
    assert code == 4
    first = err.strip().splitlines()[0]
    assert first.startswith("stspilot: ") and f"pip install 'stspilot[{extra}]'" in first
    assert "Traceback" not in err


async def test_the_core_install_holds_no_service_or_lab_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {d.split(">")[0].split("[")[0].split("<")[0].lower() for d in project["dependencies"]}
    extras = project["optional-dependencies"]
    for heavy in ("httpx", "trustme", "starlette", "fastapi", "uvicorn", "aiosmtpd", "pygal"):
        assert heavy not in core
    assert any(d.startswith("trustme") for d in extras["lab"])
    assert any(d.startswith("httpx") for d in extras["serve"])
    assert any(
        d.startswith("stspilot[") and {"serve", "lab", "postgres"} <= set(d[9:-1].split(","))
        for d in extras["dev"]
    )
