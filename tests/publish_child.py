"""A publisher process for the crash-injection test: it carries out (or resumes) a plan from
``$PUBLISH_CHILD_SPEC`` and kills itself with SIGKILL right after the journal records step
``crash = [seq, state]``, as a power cut would. ``offset`` shifts its clock (past long waits);
``max_inline_wait`` makes it pause on shorter ones (and on an MX switch not yet made)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
from pathlib import Path

from stspilot.check.run import CheckOptions
from stspilot.publish.config import DomainConfig, ZoneConfig
from stspilot.publish.plan import PublishPlan, Step
from stspilot.publish.session import open_publisher
from stspilot.store import Store


async def main() -> None:
    spec = json.loads(os.environ["PUBLISH_CHILD_SPEC"])
    zone = ZoneConfig(spec["zone"].get("zone", "example.test"), "rfc2136", spec["zone"])
    config = DomainConfig("example.test", zone, spec["policy"], verify_timeout=20)
    net = spec["check"]
    check = CheckOptions(
        nameserver=net["nameserver"],
        dns_port=net["dns_port"],
        ca_file=Path(net["ca_file"]),
        port_map={443: net["https_port"]},
        probe_mx=False,
    )
    crash = spec["crash"]

    def after(seq: int, state: str) -> None:
        if crash and [seq, state] == crash:
            os.kill(os.getpid(), signal.SIGKILL)

    offset = float(spec.get("offset", 0.0))  # the test's clock, shifted past long waits

    def clock() -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)

    inline = float(spec.get("max_inline_wait", 600.0))
    with Store.open(spec["db"]) as store:
        async with open_publisher(
            store, config, check=check, clock=clock, max_inline_wait=inline
        ) as publisher:
            publisher.after_step = after
            plan = spec["plan"]
            if plan["steps"]:
                steps = tuple(Step.from_dict(s) for s in plan["steps"])
                run = publisher.start(
                    PublishPlan(plan["domain"], plan["action"], steps), actor="child"
                )
            else:
                run = publisher.journal.open_run("example.test")
                assert run is not None
            await publisher.run(run)


if __name__ == "__main__":
    asyncio.run(main())
