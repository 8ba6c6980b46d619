"""A sandbox OAuth2 provider for tests and offline sign-in.

A real authorization server built with Authlib's Flask integration: authorization code with
PKCE (S256 only, required), refresh tokens with rotation, RFC 7009 revocation, a userinfo
endpoint, a small protected API (`/api/opportunities`) and loopback-only test controls
(`/_stats`, `/_control`). All state is in memory and lives as long as the app object.

Run it with `python -m sandbox --help`; build it in tests with `create_app(SandboxConfig(...))`.
The names below are imported from `sandbox.server` on first use, so that `python -m sandbox`
can say what to install when the `sandbox` extra (Flask) is missing instead of failing here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.server import (
        DEFAULT_SCOPES,
        DEFAULT_USERS,
        SandboxClient,
        SandboxConfig,
        SandboxState,
        SandboxUser,
        create_app,
        sandbox_state,
    )

__all__ = [
    "DEFAULT_SCOPES",
    "DEFAULT_USERS",
    "SandboxClient",
    "SandboxConfig",
    "SandboxState",
    "SandboxUser",
    "create_app",
    "sandbox_state",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("sandbox.server"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
