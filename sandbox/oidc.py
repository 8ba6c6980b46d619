"""The sandbox as an OpenID Connect issuer, for signing in to the admin console with msal.

With `SandboxConfig.oidc_tenant` set, the sandbox also issues ID tokens (RS256, a key made at
start) from its authorization code grant when `openid` is asked for, and serves the discovery
document and signing keys under `/<tenant>/`, the shape msal's `oidc_authority=` expects
(`https://host:port/<tenant>`: msal refuses an authority without a path segment, and one that
is not HTTPS, so serve the sandbox over TLS for it). The ID token carries Entra-like claims:
`tid` (the tenant), `oid` and `sub` (the user's id), `name`, `preferred_username`, `email`.
"""

from __future__ import annotations

from typing import Any

from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey

KEY_ID = "sandbox-oidc-1"


class SandboxIssuer:
    """The issuer's identity and signing key (one per sandbox)."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID, "use": "sig"})

    def issuer(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/{self.tenant}"

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False)]}

    def discovery(self, base_url: str, scopes: list[str]) -> dict[str, Any]:
        base = base_url.rstrip("/")
        return {
            "issuer": self.issuer(base),
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "userinfo_endpoint": f"{base}/oauth/userinfo",
            "jwks_uri": f"{base}/{self.tenant}/discovery/keys",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": sorted({*scopes, "openid", "profile", "offline_access"}),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "oid", "tid", "name", "preferred_username", "email"],
        }


class SandboxOpenIDCode(OpenIDCode):
    """Authlib's OpenID Connect extension of the authorization code grant, for the sandbox."""

    def __init__(
        self,
        issuer: SandboxIssuer,
        *,
        base_url: Any,
        nonce_used: Any,
    ) -> None:
        super().__init__(require_nonce=False)
        self._issuer = issuer
        self._base_url = base_url  # () -> the sandbox's public base URL for this request
        self._nonce_used = nonce_used  # (client_id, nonce) -> bool

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return bool(self._nonce_used(request.payload.client_id, nonce))

    def resolve_client_private_key(self, client: Any) -> RSAKey:
        return self._issuer.key

    def get_client_algorithm(self, client: Any) -> str:
        return "RS256"

    def get_encode_header(self, client: Any) -> dict[str, str]:
        return {"alg": "RS256", "kid": KEY_ID}

    def get_client_claims(self, client: Any) -> dict[str, Any]:
        return {"iss": self._issuer.issuer(self._base_url()), "aud": client.get_client_id()}

    def generate_user_info(self, user: Any, scope: str) -> UserInfo:
        return UserInfo(
            sub=user.id,
            oid=user.id,
            tid=self._issuer.tenant,
            name=user.name,
            preferred_username=user.email,
            email=user.email,
        )
