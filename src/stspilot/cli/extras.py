"""What a command needs beyond ``pip install stspilot``: the extras, and one line naming the
missing one (exit 4) instead of an ImportError traceback.

``pip install stspilot`` is the checker and the report tools (check, generate, rollout,
ingest, reports). The service (serve, receive, monitor webhooks) is ``stspilot[serve]``; the
simulated world (lab) is ``stspilot[lab]``; PostgreSQL is ``stspilot[postgres]``.
"""

from __future__ import annotations

from importlib.util import find_spec

from stspilot.errors import ConfigError

# extra -> the top-level modules it installs (checked without importing them)
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": (
        "starlette",
        "fastapi",
        "uvicorn",
        "jinja2",
        "multipart",
        "pygal",
        "aiosmtpd",
        "httpx",
        "prometheus_client",
        "swagger_ui",
    ),
    "lab": ("trustme",),
    "postgres": ("psycopg",),
}


def require_extra(extra: str, command: str) -> None:
    """Raise ``ConfigError`` naming ``extra`` when a module it installs is missing."""
    missing = [name for name in EXTRAS[extra] if not _installed(name)]
    if missing:
        raise ConfigError(
            f"`stspilot {command}` needs the {extra} extra: pip install 'stspilot[{extra}]' "
            f"(missing: {', '.join(missing)})"
        )


def _installed(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked package counts as missing
        return False
