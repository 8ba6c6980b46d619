"""A sandbox OAuth2 provider for tests and offline sign-in.

A real authorization server built with Authlib's Flask integration: authorization code with
PKCE (S256 only, required), refresh tokens with rotation, RFC 7009 revocation, a userinfo
endpoint, a small protected API (`/api/opportunities`) and loopback-only test controls
(`/_stats`, `/_control`). All state is in memory and lives as long as the app object.

Run it with `python -m sandbox --help`; build it in tests with `create_app(SandboxConfig(...))`.
"""

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
