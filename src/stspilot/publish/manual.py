"""The manual provider: prints the exact record change, then waits until the zone's server
shows it (polling directly, with progress and a time limit), for DNS that only a person or
another tool can change."""

from __future__ import annotations

import asyncio
import time

from stspilot.errors import PublishError
from stspilot.publish.providers import TxtChange, TxtSet, split_txt
from stspilot.publish.verify import NameServer, Progress, ask_authoritative


def zone_line(name: str, ttl: int, value: str) -> str:
    """The record as a zone-file line, split into 255-octet strings (RFC 1035 §3.3)."""
    strings = " ".join(
        '"' + s.decode().replace("\\", "\\\\").replace('"', '\\"') + '"' for s in split_txt(value)
    )
    return f"{name} {ttl} IN TXT {strings}"


class ManualProvider:
    def __init__(
        self,
        zone: str,
        server: NameServer,
        *,
        show: Progress | None,
        timeout: float = 3600.0,
        interval: float = 5.0,
    ) -> None:
        self.zone = zone
        self.server = server
        self.show = show
        self.timeout = timeout
        self.interval = interval

    @property
    def label(self) -> str:
        return f"manual zone {self.zone}"

    async def aclose(self) -> None:
        """Nothing to close."""

    async def read_txt(self, name: str) -> TxtSet:
        return await ask_authoritative(self.server, name, label=self.label)

    async def write_txt(self, change: TxtChange, current: TxtSet) -> None:
        lines = [f"In zone {self.zone}, change this in ONE edit (never two v= records at once):"]
        lines += [
            f"  delete: {zone_line(change.name, current.ttl, v)}"
            for v in current.values(change.prefix)
        ]
        if change.value is not None:
            lines.append(f"  add:    {zone_line(change.name, change.ttl, change.value)}")
        lines.append(f"Waiting until {self.server.label} serves it ...")
        if self.show is not None:
            self.show("\n".join(lines))
        started = time.monotonic()
        while True:
            now = await self.read_txt(change.name)
            if now.holds(change.prefix, change.value):
                return
            if time.monotonic() - started > self.timeout:
                raise PublishError(
                    f"{change.label} not visible at {self.server.label} after {self.timeout:g}s",
                    step=f"dns {change.label}",
                    answer="timeout",
                )
            if self.show is not None:
                shown = " | ".join(now.values(change.prefix)) or "no record"
                self.show(f"  {self.server.label} still serves {shown}")
            await asyncio.sleep(self.interval)
