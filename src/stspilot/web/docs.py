"""``GET /docs``: the JSON API's OpenAPI description, browsable offline by logged-in users.

Swagger UI comes from the ``swagger-ui-py`` package (its ``static/`` folder: the Swagger UI
distribution, 5.x, which reads OpenAPI 3.1 as FastAPI writes it), served by the app under
``/docs/assets``; nothing loads from a CDN. The page itself (``templates/docs.html``) has no
inline script (a strict Content-Security-Policy allows it): ``static/docs.js`` starts Swagger
UI on ``/api/openapi.json``, which needs the same login as the API, and sends the page's CSRF
token with "Try it out" requests, so a session can use them as a form would.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from starlette.staticfiles import StaticFiles

from stspilot.errors import ConfigError

ASSETS = "/docs/assets"


def swagger_ui_dir() -> Path:
    """The folder of the Swagger UI distribution inside the installed ``swagger_ui`` package."""
    try:
        folder = Path(str(files("swagger_ui") / "static"))
    except ModuleNotFoundError as exc:  # a broken install: say which package is missing
        raise ConfigError("the swagger-ui-py package is not installed (needed by /docs)") from exc
    if not (folder / "swagger-ui-bundle.js").is_file():
        raise ConfigError(f"no Swagger UI distribution in {folder}")
    return folder


def swagger_ui_assets() -> StaticFiles:
    """The Swagger UI files as an ASGI app to mount at ``ASSETS``."""
    return StaticFiles(directory=str(swagger_ui_dir()))
