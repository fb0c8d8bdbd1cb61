"""The web service: ``create_app(settings, store)`` (policy host, report intake, API, login).

For page modules: ``stspilot.web.auth`` has ``current_user``, ``require_user``,
``require_page_user`` and ``csrf_token``; templates extend ``web/templates/base.html``.
Attributes are imported lazily so ``import stspilot.web.settings`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stspilot.web.app import create_app
    from stspilot.web.settings import WebSettings

__all__ = ["WebSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from stspilot.web.app import create_app

        return create_app
    if name == "WebSettings":
        from stspilot.web.settings import WebSettings

        return WebSettings
    raise AttributeError(name)
