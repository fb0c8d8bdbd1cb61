"""``stspilot serve`` as a real process on a free loopback port, for the tests of the public
service (issue 15): what an outsider can do to the server that runs in production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Served:
    base: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[str]

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])


@contextmanager
def serving(
    store_url: str, env: Mapping[str, str] = {}, *, listen: str = "127.0.0.1:0"
) -> Iterator[Served]:
    """Run ``stspilot serve --db store_url`` until the block ends (killed with its group)."""
    full = {
        **os.environ,
        "STSPILOT_SECRET_KEY": "serve-process-secret-0123456789",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "stspilot", "serve", "--listen", listen, "--db", store_url],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("stspilot serving on http://"), line
        yield Served(line.split()[-1], process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
