"""Build the Teams app package: manifest.json, color.png and outline.png at the root of one zip.

    python -m manifest.build --bot-id <MicrosoftAppId> --base-url https://bot.example.com \\
        [--app-id GUID] [--version 1.0.0] [--out manifest/build/runtime-connections.zip]

`--bot-id` falls back to `MicrosoftAppId`, then `APP_ID`; `--base-url` to `PUBLIC_BASE_URL`.
`render_manifest` is the pure part (template in, dict out); `build_package` writes the zip.

Why validDomains holds exactly one entry, the bot's own host (with its port when not the default):
- The v1.24 schema gives its items no pattern (any string up to 2048 characters, at most 16), so the
  format comes from the docs and Microsoft's tooling, not the schema.
- The Teams manifest reference says validDomains lists the domains of pages the app loads inside the
  Teams client: ours are /auth/start and the sign-in result page on the bot's public base URL, which
  Teams opens in its authentication window. It also says not to list identity providers' domains:
  the provider's authorize page is reached by a redirect from /auth/start and needs no entry.
- Entries are domains, not URLs (no scheme, no path). Microsoft's own tooling writes a local dev
  domain as "localhost:3000" (the default manifest in npm @microsoft/app-manifest), so a non-default
  port stays ("localhost:3978"); an explicit default port (443, 80) is dropped, as a browser origin
  has none.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import messages

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATE_PATH = PACKAGE_DIR / "manifest.template.json"
COLOR_ICON_PATH = PACKAGE_DIR / "color.png"
OUTLINE_ICON_PATH = PACKAGE_DIR / "outline.png"
DEFAULT_OUT = PACKAGE_DIR / "build" / "runtime-connections.zip"
DEFAULT_VERSION = "1.0.0"

MANIFEST_VERSION = "1.24"
SCHEMA_URL = (
    "https://developer.microsoft.com/en-us/json-schemas/teams/"
    f"v{MANIFEST_VERSION}/MicrosoftTeams.schema.json"
)

BOT_ID_ENV_VARS = ("MicrosoftAppId", "APP_ID")
BASE_URL_ENV_VAR = "PUBLIC_BASE_URL"

# The schema's own `guid` definition: both `id` and `bots[].botId` must match it.
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# Teams wants MAJOR.MINOR.PATCH without pre-release or build parts.
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
# Plain http is only acceptable where nothing crosses a network: local development and the
# Agents Playground.
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A fixed namespace so the same bot id always yields the same Teams app id: rebuilding the package
# then updates the installed app instead of adding a second one.
_APP_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:runtime-user-connections:teams-app")
# Fixed zip timestamps make the package byte-for-byte reproducible for the same inputs.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


class ManifestInputError(ValueError):
    """An input the package cannot be built from; the message is one sentence for the operator."""


def default_app_id(bot_id: str) -> str:
    """Return the stable Teams app id derived from a bot id (UUID5, case-insensitive)."""
    return str(uuid.uuid5(_APP_ID_NAMESPACE, bot_id.strip().lower()))


def bot_domain(base_url: str) -> str:
    """Return the validDomains entry for a public base URL: host, plus port when not the default.

    Raises:
        ManifestInputError: if the URL is not an acceptable public base URL.
    """
    return _parse_base_url(base_url)[1]


def render_manifest(
    *,
    bot_id: str,
    base_url: str,
    app_id: str | None = None,
    version: str = DEFAULT_VERSION,
) -> dict[str, Any]:
    """Render the manifest for one bot registration and public base URL.

    Args:
        bot_id: the bot's Microsoft App ID (a GUID).
        base_url: the bot's public base URL, where /auth/start lives.
        app_id: the Teams app id (a GUID); derived from `bot_id` when not given.
        version: the app version, MAJOR.MINOR.PATCH.

    Returns:
        The manifest as a new dict, safe for the caller to change.

    Raises:
        ManifestInputError: if an input is malformed.
    """
    bot_id = _require_guid(bot_id, messages.MANIFEST_BOT_ID)
    app_id = (
        default_app_id(bot_id)
        if app_id is None
        else _require_guid(app_id, messages.MANIFEST_APP_ID)
    )
    version = version.strip()
    if not _SEMVER.match(version):
        raise ManifestInputError(messages.MANIFEST_VERSION_INVALID.format(version=version))
    normalized_base_url, domain = _parse_base_url(base_url)
    values = {
        "APP_ID": app_id,
        "BOT_ID": bot_id,
        "VERSION": version,
        "BASE_URL": normalized_base_url,
        "BOT_DOMAIN": domain,
    }
    # Substitute in the parsed tree, not the text, so no value can break the JSON around it.
    return _substitute(json.loads(_template_text()), values)


def build_package(
    *,
    bot_id: str,
    base_url: str,
    out: Path = DEFAULT_OUT,
    app_id: str | None = None,
    version: str = DEFAULT_VERSION,
) -> Path:
    """Write the app package zip (manifest.json, color.png, outline.png at its root).

    Args:
        bot_id: the bot's Microsoft App ID (a GUID).
        base_url: the bot's public base URL, where /auth/start lives.
        out: where to write the zip; parent directories are created.
        app_id: the Teams app id (a GUID); derived from `bot_id` when not given.
        version: the app version, MAJOR.MINOR.PATCH.

    Returns:
        The path of the written zip.

    Raises:
        ManifestInputError: if an input is malformed.
    """
    manifest = render_manifest(bot_id=bot_id, base_url=base_url, app_id=app_id, version=version)
    entries = {
        "manifest.json": (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode(),
        manifest["icons"]["color"]: COLOR_ICON_PATH.read_bytes(),
        manifest["icons"]["outline"]: OUTLINE_ICON_PATH.read_bytes(),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a failed build never leaves a half-written package.
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    partial.replace(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Build the package from the command line; return the exit status (2 for bad input)."""
    parser = argparse.ArgumentParser(
        prog="python -m manifest.build",
        description="Build the Teams app package (manifest.json + icons) for this bot.",
    )
    parser.add_argument(
        "--bot-id", help="the bot's Microsoft App ID (default: $MicrosoftAppId, then $APP_ID)"
    )
    parser.add_argument(
        "--base-url",
        help=f"the bot's public base URL, where /auth/start lives (default: ${BASE_URL_ENV_VAR})",
    )
    parser.add_argument("--app-id", help="the Teams app id (default: derived from the bot id)")
    parser.add_argument(
        "--version", default=DEFAULT_VERSION, help="the app version (MAJOR.MINOR.PATCH)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the zip")
    args = parser.parse_args(argv)

    # Read the environment here, not at import time, so the defaults are the caller's current ones.
    bot_id = _first_non_empty(args.bot_id, *(os.environ.get(name) for name in BOT_ID_ENV_VARS))
    base_url = _first_non_empty(args.base_url, os.environ.get(BASE_URL_ENV_VAR))
    if bot_id is None:
        return _fail(messages.MANIFEST_BOT_ID_MISSING)
    if base_url is None:
        return _fail(messages.MANIFEST_BASE_URL_MISSING.format(variable=BASE_URL_ENV_VAR))
    try:
        path = build_package(
            bot_id=bot_id, base_url=base_url, out=args.out, app_id=args.app_id, version=args.version
        )
    except ManifestInputError as error:
        return _fail(str(error))
    print(path)
    return 0


def _fail(message: str) -> int:
    print(messages.MANIFEST_FAILED.format(error=message), file=sys.stderr)
    return 2


def _first_non_empty(*candidates: str | None) -> str | None:
    for candidate in candidates:
        if candidate is not None and candidate.strip():
            return candidate.strip()
    return None


def _require_guid(value: str, what: str) -> str:
    value = value.strip()
    if not _GUID.match(value):
        raise ManifestInputError(messages.MANIFEST_GUID_INVALID.format(what=what, value=value))
    return value


def _parse_base_url(base_url: str) -> tuple[str, str]:
    """Return (base URL without trailing slash or default port, validDomains entry)."""
    raw = base_url.strip()
    parts = urlsplit(raw)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ManifestInputError(messages.MANIFEST_BASE_URL_NOT_ABSOLUTE.format(url=raw))
    if parts.username is not None or parts.query or parts.fragment:
        raise ManifestInputError(messages.MANIFEST_BASE_URL_EXTRAS)
    host = parts.hostname  # already lower-cased by urlsplit
    if parts.scheme != "https" and host not in _LOOPBACK_HOSTS:
        raise ManifestInputError(messages.MANIFEST_BASE_URL_NOT_HTTPS.format(host=host))
    try:
        port = parts.port
    except ValueError:
        raise ManifestInputError(messages.MANIFEST_BASE_URL_PORT.format(url=raw)) from None
    domain = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        domain = f"{domain}:{port}"
    return f"{parts.scheme}://{domain}{parts.path.rstrip('/')}", domain


@functools.cache
def _template_text() -> str:
    # Read once per process; every render parses its own copy, so callers never share state.
    return TEMPLATE_PATH.read_text(encoding="utf-8")


def _substitute(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _substitute(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    if isinstance(node, str):
        return _PLACEHOLDER.sub(lambda match: values[match.group(1)], node)
    return node


if __name__ == "__main__":
    raise SystemExit(main())
