"""Where the policy file goes: the store ``stspilot serve`` hosts from, a web root, or elsewhere.

Every destination is verified the same way afterwards (``verify.verify_policy``: the public URL,
fetched as a sender fetches it), so a destination only has to put the bytes in place:

- ``hosted``: the hosted-policy store; it gives each served body its own fresh ``id``
  (``store/hosting.py``), which the TXT step then publishes;
- ``webroot:PATH``: ``PATH/.well-known/mta-sts.txt`` written atomically (a temporary file in the
  same folder, flushed, then renamed over the old one: a web server never serves half a file);
  ``{domain}`` in PATH is replaced by the domain, for one root per ``mta-sts.`` virtual host;
- ``elsewhere``: someone else serves it; stspilot prints the body and waits until it is served.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from stspilot.errors import ConfigError, PublishError, StoreError

if TYPE_CHECKING:
    from stspilot.store import Store

WELL_KNOWN = Path(".well-known") / "mta-sts.txt"


@dataclass(frozen=True, slots=True)
class Served:
    """What a destination now serves: the exact body and the id it goes with."""

    text: str
    policy_id: str


@dataclass(frozen=True, slots=True)
class PolicyChange:
    domain: str
    text: str
    policy_id: str
    mode: str
    mx: tuple[str, ...]
    max_age: int


class PolicyDestination(Protocol):
    @property
    def label(self) -> str: ...

    async def put(self, change: PolicyChange) -> Served: ...

    async def remove(self, domain: str) -> None: ...


class WebrootDestination:
    def __init__(self, root: str) -> None:
        if not root:
            raise ConfigError("webroot: needs a folder, e.g. webroot:/var/www/mta-sts")
        self.root = root

    @property
    def label(self) -> str:
        return f"webroot:{self.root}"

    def path(self, domain: str) -> Path:
        return Path(self.root.replace("{domain}", domain)) / WELL_KNOWN

    async def put(self, change: PolicyChange) -> Served:
        await asyncio.to_thread(self._write, self.path(change.domain), change.text)
        return Served(change.text, change.policy_id)

    @staticmethod
    def _write(target: Path, text: str) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".mta-sts.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(text.encode("ascii"))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(temp, 0o644)  # web servers run as another user
                os.replace(temp, target)  # atomic on POSIX: old or new, never half
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise PublishError(
                f"cannot write {target}: {exc.strerror or exc}",
                step=f"policy {target}",
                answer=exc.__class__.__name__,
            ) from None

    async def remove(self, domain: str) -> None:
        target = self.path(domain)
        try:
            await asyncio.to_thread(target.unlink, missing_ok=True)
        except OSError as exc:
            raise PublishError(f"cannot remove {target}: {exc}", step=f"policy {target}") from None


class HostedDestination:
    """The hosted-policy store; the domain must be hosted already (``stspilot serve`` admin)."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime], actor: str = "") -> None:
        from stspilot.store.hosting import HostedPolicies

        self.hosted = HostedPolicies(store)
        self.clock = clock
        self.actor = actor

    @property
    def label(self) -> str:
        return "hosted"

    async def put(self, change: PolicyChange) -> Served:
        try:
            if self.hosted.get(change.domain) is None:
                raise PublishError(
                    f"{change.domain} is not hosted here: add it in the dashboard or API first",
                    step="policy hosted",
                    answer="not hosted",
                )
            done = self.hosted.update(
                change.domain,
                now=self.clock(),
                mode=change.mode,
                mx=list(change.mx),
                max_age=change.max_age,
                reason="stspilot publish",
                actor=self.actor,
            )
        except (StoreError, ConfigError) as exc:
            raise PublishError(str(exc), step="policy hosted", answer="store") from None
        return Served(done.policy_text, done.policy_id)

    async def remove(self, domain: str) -> None:
        try:
            if self.hosted.get(domain) is not None:
                # The journal's own wait decided it is time (its TXT record is gone already).
                self.hosted.remove(domain, now=self.clock(), force=True)
        except StoreError as exc:
            raise PublishError(str(exc), step="policy hosted", answer="store") from None


class ElsewhereDestination:
    """Someone else serves the policy: show it, then verification waits until it is served."""

    def __init__(self, show: Callable[[str], None] | None = None) -> None:
        self.show = show

    @property
    def label(self) -> str:
        return "elsewhere"

    async def put(self, change: PolicyChange) -> Served:
        if self.show is not None:
            self.show(
                f"Serve this at https://mta-sts.{change.domain}/.well-known/mta-sts.txt "
                f"(text/plain); stspilot waits until it is served:\n{change.text}"
            )
        return Served(change.text, change.policy_id)

    async def remove(self, domain: str) -> None:
        if self.show is not None:
            self.show(f"Stop serving https://mta-sts.{domain}/.well-known/mta-sts.txt now.")


def parse_destination(
    spec: str,
    *,
    store: Store | None,
    clock: Callable[[], datetime],
    show: Callable[[str], None] | None = None,
    actor: str = "",
) -> PolicyDestination:
    """``hosted``, ``webroot:PATH`` or ``elsewhere``."""
    kind, _, rest = spec.partition(":")
    if kind == "webroot":
        return WebrootDestination(rest)
    if kind == "hosted" and not rest:
        if store is None:
            raise ConfigError("--policy hosted needs the store (--db)")
        return HostedDestination(store, clock=clock, actor=actor)
    if kind == "elsewhere" and not rest:
        return ElsewhereDestination(show)
    raise ConfigError(f"unknown policy destination {spec!r}: hosted, webroot:PATH or elsewhere")
