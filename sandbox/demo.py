"""Try the whole sign-in offline: the bot together with the sandbox provider.

    python -m sandbox.demo

starts the sandbox OAuth2 provider on http://127.0.0.1:5001 and the bot on
http://localhost:3978/api/messages (embedded store, authentication off), with a `sandbox` app
configured, a parent connection for it, and a Disconnected sandbox connection for the Agents
Playground's default user (Alex Wilber). In the Playground, type `personal_connections`, pick the
sandbox connection, press Reconnect, sign in in the popup and type the code it shows; then
`sandbox opportunity "Acme" 5000` creates an opportunity in the sandbox credited to you.

The sandbox is never started by `python app.py`: only this command (or the tests) run it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

import messages
from app import DATABASE_KEY, PathOnlyAccessLogger, configure_logging, create_app
from settings import SettingsError, load_settings

try:
    from werkzeug.serving import make_server

    from sandbox.server import SandboxClient, SandboxConfig
    from sandbox.server import create_app as create_sandbox
except ModuleNotFoundError as missing:
    # Flask (the `sandbox` extra) is not installed: say what to install, no traceback.
    print(messages.SANDBOX_EXTRA_MISSING.format(module=missing.name), file=sys.stderr)
    raise SystemExit(2) from None
from storage.models import ConnectionStatus, Owner, ProviderAccount

SANDBOX_PORT = 5001
CLIENT_ID = "sandbox-client"
# A local, throwaway secret: the sandbox only listens on loopback.
CLIENT_SECRET = "sandbox-demo-secret"  # noqa: S105
SECRET_VARIABLE = "SANDBOX_CLIENT_SECRET"  # noqa: S105 - the variable's name

# The Agents Playground's default user (0.2.28); ids are opaque strings.
PLAYGROUND_USER = Owner(
    tenant_id="00000000-0000-0000-0000-0000000000001",
    aad_object_id="00000000-0000-0000-0000-0000000000020",
    teams_user_id="user-id-0",
    name="Alex Wilber",
)
DEMO_ADMIN = Owner(tenant_id=PLAYGROUND_USER.tenant_id, aad_object_id="demo-admin", name="Admin")

PLAYGROUND_COMMAND = (
    "APPLICATION_INSIGHTS_NO_STATSBEAT=true TEAMSAPPTESTER_BROWSER=none "
    "npx agentsplayground -e http://localhost:3978/api/messages -c msteams --disable-telemetry"
)

log = logging.getLogger("sandbox.demo")


def write_apps_file(data_dir: Path, sandbox_url: str) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "sandbox-apps.toml"
    path.write_text(
        "# Written by `python -m sandbox.demo`.\n"
        "[apps.sandbox]\n"
        'preset = "sandbox"\n'
        f'base_url = "{sandbox_url}"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret_env = "{SECRET_VARIABLE}"\n'
        "[parents.sandbox_team]\n"
        'app = "sandbox"\n'
        'contact = "whoever runs this demo"\n'
        f'tenant = "{PLAYGROUND_USER.tenant_id}"\n'
    )
    return path


def write_recipes_file(data_dir: Path) -> Path:
    path = data_dir / "sandbox-recipes.toml"
    path.write_text(
        "# Written by `python -m sandbox.demo`.\n"
        "[recipes.sandbox_opportunity]\n"
        'name = "Sandbox opportunity"\n'
        'phrase = "sandbox opportunity {name} {amount:number}"\n'
        'parent = "sandbox_team"\n'
        "verify_user_access = true\n"
        'description = "Create an opportunity in the sandbox app, as yourself"\n'
        "[recipes.sandbox_opportunity.action]\n"
        'method = "POST"\n'
        'url = "{connection.api_base_url}/api/opportunities"\n'
        'body = { name = "{name}", amount = "{amount}" }\n'
        "[recipes.sandbox_opportunity.result]\n"
        'verb = "Created"\n'
        'fields = { Id = "id", "Created by" = "created_by.email" }\n'
    )
    return path


async def seed_connections(app: web.Application) -> AsyncIterator[None]:
    """A sandbox parent and a Disconnected connection for the Playground user, once."""
    store = app[DATABASE_KEY].connections
    tenant = PLAYGROUND_USER.tenant_id
    parent = await store.find_parent("sandbox_team", tenant_id=tenant) or await store.create_parent(
        provider="sandbox",
        owner=DEMO_ADMIN,
        account=ProviderAccount(id="user-omar", display_name="omar@sandbox.example"),
        name="sandbox_team",
    )
    if not await store.list_for_owner(owner=PLAYGROUND_USER):
        await store.create_runtime(
            parent_id=parent.id,
            owner=PLAYGROUND_USER,
            account=ProviderAccount(
                id="not-signed-in", display_name=messages.SANDBOX_NOT_SIGNED_IN
            ),
            status=ConnectionStatus.DISCONNECTED,
        )
    yield


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as error:
        print(messages.START_FAILED.format(error=error), file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    base_url = str(settings.public_base_url).rstrip("/")
    sandbox = make_server(
        "127.0.0.1",
        SANDBOX_PORT,
        create_sandbox(
            SandboxConfig(
                clients=(
                    SandboxClient(
                        CLIENT_ID, CLIENT_SECRET, redirect_uris=(f"{base_url}/auth/callback",)
                    ),
                )
            )
        ),
        threaded=True,
    )
    threading.Thread(target=sandbox.serve_forever, daemon=True).start()
    sandbox_url = f"http://127.0.0.1:{SANDBOX_PORT}"
    os.environ[SECRET_VARIABLE] = CLIENT_SECRET
    settings = settings.model_copy(
        update={
            "apps_file": write_apps_file(settings.data_dir, sandbox_url),
            "recipes_file": write_recipes_file(settings.data_dir),
        }
    )
    app = create_app(settings)
    app.cleanup_ctx.append(seed_connections)
    log.info(messages.LOG_SANDBOX_STARTED, sandbox_url, base_url)
    log.info(messages.LOG_SANDBOX_PLAYGROUND, PLAYGROUND_COMMAND)
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            access_log_class=PathOnlyAccessLogger,
            print=None,
        )
    finally:
        sandbox.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
