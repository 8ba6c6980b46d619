"""The OAuth2 apps the bot can connect people to: presets and apps described in configuration.

An *app* is one OAuth2 client registration at a provider, configured in a TOML file
(`APPS_FILE`, see `apps.example.toml`) under `[apps.<key>]`. The key is what connection records
store in `provider`, so it must not change once connections exist. Presets fill in the endpoints
of Salesforce, ServiceNow, Box, Microsoft Graph and the local sandbox; `preset = "custom"`
describes any other OAuth2 app. Client secrets are never in the file: `client_secret_env` names
the environment variable that holds it.

Keeping connections alive (connections/keep_alive.py) reads two settings per app:
`refresh_token_idle_lifetime` ("60d", "12h", "30m", "90s", or "never"), how long the provider
keeps a refresh token that nobody uses (presets: Box 60 days, Microsoft 90 days; Salesforce and
ServiceNow follow each org's policy, so they are unset unless configured), and
`keep_access_token_fresh`, for apps whose connections recipes use in the background.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import messages

ClientAuthMethod = Literal["client_secret_post", "client_secret_basic", "none"]

PRESET_NAMES: dict[str, str] = {
    "salesforce": "Salesforce",
    "servicenow": "ServiceNow",
    "box": "Box",
    "microsoft_graph": "Microsoft Graph",
    "sandbox": "Sandbox",
}


class AppsConfigError(ValueError):
    """The apps file is unusable; the message names the file and the key."""


@dataclass(frozen=True)
class Provider:
    """Everything the sign-in flow needs to talk to one OAuth2 app."""

    key: str
    name: str
    authorize_url: str
    token_url: str
    revoke_url: str | None
    userinfo_url: str | None
    client_id: str
    client_secret: str | None = field(repr=False)
    client_auth_method: ClientAuthMethod
    scopes: tuple[str, ...]
    pkce: bool
    # Where the connection's API calls go; a token response field can override it
    # (Salesforce answers with the org's `instance_url`).
    api_base_url: str | None
    api_base_url_token_field: str | None = None
    # Userinfo fields (dotted paths) tried in order to name the account that signed in.
    account_fields: tuple[str, ...] = ("email", "preferred_username", "name")
    account_id_fields: tuple[str, ...] = ("sub", "id", "user_id")
    extra_authorize_params: Mapping[str, str] = field(default_factory=dict)
    # How long the provider keeps a refresh token nobody uses (None: as long as it is valid).
    refresh_token_idle_lifetime: timedelta | None = None
    # Keep access tokens refreshed ahead of expiry (apps recipes use in the background).
    keep_access_token_fresh: bool = False


class AppConfig(BaseModel):
    """One `[apps.<key>]` table of the apps file."""

    model_config = ConfigDict(extra="forbid")

    preset: Literal["salesforce", "servicenow", "box", "microsoft_graph", "sandbox", "custom"]
    name: str | None = None
    client_id: str = Field(min_length=1)
    client_secret_env: str | None = None
    scopes: list[str] | None = None
    pkce: bool | None = None
    client_auth_method: ClientAuthMethod | None = None
    # Salesforce: login.salesforce.com, test.salesforce.com or a My Domain host.
    host: str | None = None
    # ServiceNow: the instance name (acme for acme.service-now.com).
    instance: str | None = None
    # Microsoft: the Entra tenant id, or organizations / common.
    tenant: str | None = None
    # Sandbox and custom apps.
    base_url: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    revoke_url: str | None = None
    userinfo_url: str | None = None
    api_base_url: str | None = None
    account_field: str | None = None
    # "60d", "12h", "30m", "90s" or "never"; unset: the preset's.
    refresh_token_idle_lifetime: str | None = None
    keep_access_token_fresh: bool = False

    @field_validator("refresh_token_idle_lifetime")
    @classmethod
    def _lifetime(cls, value: str | None) -> str | None:
        if value is not None:
            parse_lifetime(value)
        return value

    @field_validator("host")
    @classmethod
    def _salesforce_host(cls, value: str | None) -> str | None:
        if value is not None and not (
            value in ("login.salesforce.com", "test.salesforce.com")
            or value.endswith((".my.salesforce.com", ".salesforce.com"))
        ):
            raise ValueError(messages.APPS_SALESFORCE_HOST)
        return value


_LIFETIME = re.compile(r"(\d{1,6})\s*([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_lifetime(value: str) -> timedelta | None:
    """A lifetime such as "60d", "12h", "30m" or "90s"; "never" is None.

    Raises:
        ValueError: with a sentence saying what is accepted.
    """
    text = value.strip().lower()
    if text == "never":
        return None
    match = _LIFETIME.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(messages.APPS_LIFETIME_INVALID.format(value=value))
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _https(url: str, what: str) -> str:
    # Plain http only on loopback (the sandbox, tests); anything else must be TLS.
    loopback = url.startswith(("http://localhost", "http://127.0.0.1"))
    if not (url.startswith("https://") or loopback):
        raise ValueError(messages.APPS_URL_NOT_HTTPS.format(what=what))
    return url.rstrip("/")


def build_provider(key: str, app: AppConfig, environ: Mapping[str, str]) -> Provider:
    """Resolve one configured app into a Provider (preset endpoints + configuration)."""
    secret = None
    if app.client_secret_env:
        secret = environ.get(app.client_secret_env) or None
        if secret is None:
            raise ValueError(
                messages.APPS_ENV_VARIABLE_UNSET.format(variable=app.client_secret_env)
            )
    preset = _PRESETS[app.preset](app)
    scopes = tuple(app.scopes) if app.scopes is not None else preset["scopes"]
    idle = preset.get("refresh_token_idle_lifetime")
    if app.refresh_token_idle_lifetime is not None:
        idle = parse_lifetime(app.refresh_token_idle_lifetime)
    account_fields = preset.get("account_fields", Provider.account_fields)
    if app.account_field:
        account_fields = (app.account_field, *account_fields)
    return Provider(
        key=key,
        name=app.name or PRESET_NAMES.get(app.preset, key.replace("_", " ").title()),
        authorize_url=preset["authorize_url"],
        token_url=preset["token_url"],
        revoke_url=preset.get("revoke_url"),
        userinfo_url=preset.get("userinfo_url"),
        client_id=app.client_id,
        client_secret=secret,
        client_auth_method=app.client_auth_method
        or preset.get("client_auth_method", "client_secret_post"),
        scopes=scopes,
        pkce=app.pkce if app.pkce is not None else preset["pkce"],
        api_base_url=app.api_base_url or preset.get("api_base_url"),
        api_base_url_token_field=preset.get("api_base_url_token_field"),
        account_fields=account_fields,
        account_id_fields=preset.get("account_id_fields", Provider.account_id_fields),
        refresh_token_idle_lifetime=idle,
        keep_access_token_fresh=app.keep_access_token_fresh,
    )


def _salesforce(app: AppConfig) -> dict[str, Any]:
    base = f"https://{app.host or 'login.salesforce.com'}/services/oauth2"
    return {
        "authorize_url": f"{base}/authorize",
        "token_url": f"{base}/token",
        "revoke_url": f"{base}/revoke",
        "userinfo_url": f"{base}/userinfo",
        "scopes": ("api", "refresh_token", "openid", "email"),
        "pkce": True,
        "api_base_url_token_field": "instance_url",
        "account_fields": ("email", "preferred_username"),
        "account_id_fields": ("user_id", "sub"),
    }


def _servicenow(app: AppConfig) -> dict[str, Any]:
    if not app.instance:
        raise ValueError(messages.APPS_SERVICENOW_INSTANCE)
    base = f"https://{app.instance}.service-now.com"
    return {
        "authorize_url": f"{base}/oauth_auth.do",
        "token_url": f"{base}/oauth_token.do",
        "revoke_url": f"{base}/oauth_revoke_token.do",
        "userinfo_url": f"{base}/api/now/ui/user/current_user",
        "scopes": ("useraccount",),
        "pkce": True,
        "api_base_url": base,
        "account_fields": ("result.user_name", "result.email"),
        "account_id_fields": ("result.user_sys_id",),
    }


def _box(app: AppConfig) -> dict[str, Any]:
    return {
        "authorize_url": "https://account.box.com/api/oauth2/authorize",
        "token_url": "https://api.box.com/oauth2/token",
        "revoke_url": "https://api.box.com/oauth2/revoke",
        "userinfo_url": "https://api.box.com/2.0/users/me",
        # Box's scopes are set on the app in its developer console.
        "scopes": (),
        "pkce": False,
        "api_base_url": "https://api.box.com/2.0",
        # Box: "a refresh token is valid for 60 days" and single-use.
        "refresh_token_idle_lifetime": timedelta(days=60),
        "account_fields": ("login", "name"),
        "account_id_fields": ("id",),
    }


def _microsoft_graph(app: AppConfig) -> dict[str, Any]:
    base = f"https://login.microsoftonline.com/{app.tenant or 'organizations'}/oauth2/v2.0"
    return {
        "authorize_url": f"{base}/authorize",
        "token_url": f"{base}/token",
        # The Microsoft identity platform has no per-token revocation endpoint.
        "revoke_url": None,
        "userinfo_url": "https://graph.microsoft.com/v1.0/me",
        "scopes": ("openid", "profile", "offline_access", "User.Read"),
        "pkce": True,
        "api_base_url": "https://graph.microsoft.com/v1.0",
        # Microsoft identity platform: refresh tokens unused for 90 days lapse.
        "refresh_token_idle_lifetime": timedelta(days=90),
        "account_fields": ("mail", "userPrincipalName"),
        "account_id_fields": ("id",),
    }


def _sandbox(app: AppConfig) -> dict[str, Any]:
    base = _https(app.base_url or "http://127.0.0.1:5001", "base_url")
    return {
        "authorize_url": f"{base}/oauth/authorize",
        "token_url": f"{base}/oauth/token",
        "revoke_url": f"{base}/oauth/revoke",
        "userinfo_url": f"{base}/oauth/userinfo",
        "scopes": ("profile", "email"),
        "pkce": True,
        "api_base_url": base,
    }


def _custom(app: AppConfig) -> dict[str, Any]:
    if not app.authorize_url or not app.token_url:
        raise ValueError(messages.APPS_CUSTOM_URLS)
    return {
        "authorize_url": _https(app.authorize_url, "authorize_url"),
        "token_url": _https(app.token_url, "token_url"),
        "revoke_url": _https(app.revoke_url, "revoke_url") if app.revoke_url else None,
        "userinfo_url": _https(app.userinfo_url, "userinfo_url") if app.userinfo_url else None,
        "scopes": (),
        "pkce": True,
    }


_PRESETS = {
    "salesforce": _salesforce,
    "servicenow": _servicenow,
    "box": _box,
    "microsoft_graph": _microsoft_graph,
    "sandbox": _sandbox,
    "custom": _custom,
}


@dataclass(frozen=True)
class ParentConfig:
    """A configured parent connection: a name recipes refer to, its app, and whom to ask."""

    name: str
    app: str
    contact: str
    # The one tenant whose people may use this parent; None: the operator names it when they
    # authorize the parent (`python -m admin parents authorize NAME --tenant ID`).
    tenant: str | None = None


class ParentTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: str
    contact: str = messages.RECIPE_CONTACT_UNKNOWN
    tenant: str | None = Field(default=None, min_length=1, max_length=200)


@dataclass(frozen=True)
class ProviderRegistry:
    """The configured apps by key, and the configured parent connections by name."""

    providers: Mapping[str, Provider] = field(default_factory=dict)
    parents: Mapping[str, ParentConfig] = field(default_factory=dict)

    def get(self, key: str) -> Provider | None:
        return self.providers.get(key)

    def display_name(self, key: str) -> str:
        provider = self.providers.get(key)
        return provider.name if provider else display_name(key)


def load_registry(path: Path | None, environ: Mapping[str, str] | None = None) -> ProviderRegistry:
    """Read the apps file (no file: no apps).

    Raises:
        AppsConfigError: naming the file and the key that is wrong.
    """
    if path is None:
        return ProviderRegistry()
    environ = os.environ if environ is None else environ
    try:
        document = tomllib.loads(path.read_text())
    except OSError as error:
        raise AppsConfigError(
            messages.CONFIG_UNREADABLE.format(path=path, reason=error.strerror)
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise AppsConfigError(messages.CONFIG_NOT_TOML.format(path=path, error=error)) from None
    unknown = set(document) - {"apps", "parents"}
    if unknown:
        raise AppsConfigError(
            messages.CONFIG_UNKNOWN_TOP_KEY.format(path=path, key=sorted(unknown)[0])
        )
    apps = document.get("apps", {})
    if not isinstance(apps, dict):
        raise AppsConfigError(messages.CONFIG_TABLE_NOT_A_TABLE.format(path=path, table="apps"))
    providers: dict[str, Provider] = {}
    for key, table in apps.items():
        where = f"{path}: apps.{key}"
        if not key.replace("_", "").isalnum() or not key.islower():
            raise AppsConfigError(messages.APPS_KEY_INVALID.format(where=where))
        try:
            app = AppConfig.model_validate(table)
            providers[key] = build_provider(key, app, environ)
        except ValidationError as error:
            first = error.errors()[0]
            location = ".".join(str(part) for part in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise AppsConfigError(
                messages.CONFIG_ERROR.format(where=f"{where}.{location}", detail=message)
            ) from None
        except ValueError as error:
            raise AppsConfigError(messages.CONFIG_ERROR.format(where=where, detail=error)) from None
    return ProviderRegistry(providers, _load_parents(path, document.get("parents", {}), providers))


def _load_parents(
    path: Path, tables: Any, providers: Mapping[str, Provider]
) -> dict[str, ParentConfig]:
    if not isinstance(tables, dict):
        raise AppsConfigError(messages.CONFIG_TABLE_NOT_A_TABLE.format(path=path, table="parents"))
    parents: dict[str, ParentConfig] = {}
    for name, table in tables.items():
        where = f"{path}: parents.{name}"
        if not name.replace("_", "").isalnum() or not name.islower():
            raise AppsConfigError(messages.APPS_PARENT_NAME_INVALID.format(where=where))
        try:
            parent = ParentTable.model_validate(table)
        except ValidationError as error:
            first = error.errors()[0]
            location = ".".join(str(part) for part in first["loc"])
            raise AppsConfigError(
                messages.CONFIG_ERROR.format(where=f"{where}.{location}", detail=first["msg"])
            ) from None
        if parent.app not in providers:
            raise AppsConfigError(
                messages.APPS_PARENT_APP_UNKNOWN.format(where=where, app=parent.app)
            )
        parents[name] = ParentConfig(
            name=name, app=parent.app, contact=parent.contact, tenant=parent.tenant
        )
    return parents


def display_name(provider: str) -> str:
    """The app name people see, for a key without configuration (e.g. a removed app)."""
    return PRESET_NAMES.get(provider, provider.replace("_", " ").title())
