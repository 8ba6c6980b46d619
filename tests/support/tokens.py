"""Bot Framework-style signing keys served on loopback, and tokens signed with them.

Lets the tests check inbound authentication offline: the bot's OpenID metadata URL points here.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://api.botframework.com"


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class SigningKeyServer:
    key_id: str = "test-key-1"
    endorsements: list[str] = field(default_factory=lambda: ["msteams"])
    private_key: rsa.RSAPrivateKey = field(default_factory=_new_key)
    requests: int = 0
    # When set, requests wait until it is set again (a key endpoint that stalls).
    stalled: asyncio.Event | None = None
    _server: TestServer | None = None

    @property
    def metadata_url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("/v1/.well-known/openidconfiguration"))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/.well-known/openidconfiguration", self._metadata)
        app.router.add_get("/v1/keys", self._keys)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    async def _metadata(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.stalled is not None:
            await self.stalled.wait()
        assert self._server is not None
        return web.json_response(
            {"issuer": ISSUER, "jwks_uri": str(self._server.make_url("/v1/keys"))}
        )

    async def _keys(self, request: web.Request) -> web.Response:
        self.requests += 1
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk |= {"kid": self.key_id, "use": "sig", "endorsements": self.endorsements}
        return web.json_response({"keys": [jwk]})

    def token(
        self,
        *,
        audience: str,
        service_url: str,
        issuer: str = ISSUER,
        expires_in: int = 3600,
        key: rsa.RSAPrivateKey | None = None,
        key_id: str | None = None,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience,
            "serviceurl": service_url,
            "nbf": now - 10,
            "iat": now - 10,
            "exp": now + expires_in,
        }
        return jwt.encode(
            claims,
            key or self.private_key,
            algorithm="RS256",
            headers={"kid": key_id or self.key_id},
        )
