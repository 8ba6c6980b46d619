"""Run the sandbox OAuth2 provider: `python -m sandbox --client-id … --redirect-uri …`.

It listens on loopback unless `--allow-public-host` is given: there are no passwords on the
consent page, so anyone who can reach it can sign in as any sandbox user.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence

import messages

try:
    from werkzeug.serving import run_simple

    from sandbox.server import (
        AUTH_METHODS,
        DEFAULT_SCOPES,
        SandboxClient,
        SandboxConfig,
        create_app,
    )
except ModuleNotFoundError as missing:
    # Flask (the `sandbox` extra) or one of its dependencies is not installed: one sentence
    # saying what to install, exit status 2, no traceback.
    print(messages.SANDBOX_EXTRA_MISSING.format(module=missing.name), file=sys.stderr)
    raise SystemExit(2) from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description="A sandbox OAuth2 provider for offline sign-in."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--client-id", default="sandbox-client")
    parser.add_argument("--client-secret", default="sandbox-secret")
    parser.add_argument(
        "--redirect-uri",
        action="append",
        dest="redirect_uris",
        help="a registered redirect URI (repeat for more); "
        "default http://localhost:3978/auth/callback",
    )
    parser.add_argument(
        "--token-endpoint-auth-method", choices=AUTH_METHODS, default="client_secret_post"
    )
    parser.add_argument(
        "--scopes",
        default=" ".join(DEFAULT_SCOPES),
        help="space-separated scopes the client may ask for (default: %(default)s)",
    )
    parser.add_argument("--client-name", default="Sandbox client")
    parser.add_argument("--access-token-lifetime", type=int, default=3600, metavar="SECONDS")
    parser.add_argument("--issuer", help="public base URL (default: taken from each request)")
    parser.add_argument(
        "--allow-public-host",
        action="store_true",
        help="allow a --host other than loopback (anyone reaching it can sign in as anyone)",
    )
    args = parser.parse_args(argv)
    if not _is_loopback(args.host) and not args.allow_public_host:
        parser.error(f"--host {args.host} is not loopback; add --allow-public-host to allow it")
    if args.access_token_lifetime < 1:
        parser.error("--access-token-lifetime must be at least 1")
    return args


def build_config(args: argparse.Namespace) -> SandboxConfig:
    client = SandboxClient(
        client_id=args.client_id,
        client_secret=args.client_secret,
        redirect_uris=tuple(args.redirect_uris or ["http://localhost:3978/auth/callback"]),
        token_endpoint_auth_method=args.token_endpoint_auth_method,
        scopes=tuple(args.scopes.split()),
        name=args.client_name,
    )
    return SandboxConfig(
        clients=(client,),
        access_token_lifetime=args.access_token_lifetime,
        issuer=args.issuer,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = build_config(args)
    if args.allow_public_host and not _is_loopback(args.host):
        # Authlib refuses plain http except on loopback; a LAN sandbox has no real secrets.
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    base = config.issuer or f"http://{args.host}:{args.port}"
    print(
        f"Sandbox OAuth2 provider on {base} (client {args.client_id}); "
        f"metadata: {base}/.well-known/oauth-authorization-server",
        file=sys.stderr,
    )
    run_simple(args.host, args.port, create_app(config), threaded=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
