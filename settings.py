"""The bot's configuration: one typed, validated `Settings` read from the environment.

Every setting has one canonical environment variable; the Bot Framework's customary names
(`MicrosoftAppId`, `MicrosoftAppPassword`, ...) are accepted as well. Invalid configuration
stops the start with one sentence naming the variable (`load_settings`). Secrets are
`SecretStr` and are turned into plain strings only at the Bot Framework boundary
(`bots/auth.py`).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

import messages

BOT_FRAMEWORK_OPENID_METADATA_URL = (
    "https://login.botframework.com/v1/.well-known/openidconfiguration"
)

ANY_TENANT = "*"
LOOPBACK_HOSTS = frozenset({"localhost", "localhost.", "ip6-localhost"})

AppType = Literal["MultiTenant", "SingleTenant", "UserAssignedMSI"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class SettingsError(ValueError):
    """Configuration that cannot start the bot; the message is one sentence for a person."""


class Settings(BaseSettings):
    """All configuration of the bot. Field docs name the environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=False,
    )

    app_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MicrosoftAppId", "APP_ID", "MICROSOFT_APP_ID"),
        description="Bot Framework app (client) id. Unset: authentication is off (local use).",
    )
    app_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "MicrosoftAppPassword", "APP_PASSWORD", "MICROSOFT_APP_PASSWORD"
        ),
    )
    app_type: AppType = Field(
        default="MultiTenant",
        validation_alias=AliasChoices("MicrosoftAppType", "APP_TYPE", "MICROSOFT_APP_TYPE"),
    )
    app_tenant_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "MicrosoftAppTenantId", "APP_TENANTID", "APP_TENANT_ID", "MICROSOFT_APP_TENANT_ID"
        ),
    )
    openid_metadata_url: AnyHttpUrl = Field(
        default=AnyHttpUrl(BOT_FRAMEWORK_OPENID_METADATA_URL),
        validation_alias=AliasChoices("OPENID_METADATA_URL"),
    )
    bot_token_authority: AnyHttpUrl | None = Field(
        default=None,
        validation_alias=AliasChoices("BOT_TOKEN_AUTHORITY"),
        description=(
            "OpenID Connect issuer the bot gets its own token from (msal oidc_authority). "
            "Unset: Entra ID, at botframework.com (MultiTenant) or the app's tenant."
        ),
    )
    bot_token_scope: str = Field(
        default="https://api.botframework.com/.default",
        min_length=1,
        validation_alias=AliasChoices("BOT_TOKEN_SCOPE"),
    )
    mongodb_uri: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("MONGODB_URI")
    )
    database_name: str = Field(
        default="runtime_connections",
        min_length=1,
        max_length=60,
        pattern=r"^[A-Za-z0-9_-]+$",
        validation_alias=AliasChoices("DATABASE_NAME"),
    )
    data_dir: Path = Field(default=Path("data"), validation_alias=AliasChoices("DATA_DIR"))
    embedded_mongodb_command: str = Field(
        default="secantusd-py", validation_alias=AliasChoices("EMBEDDED_MONGODB_COMMAND")
    )
    public_base_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("http://localhost:3978"),
        validation_alias=AliasChoices("PUBLIC_BASE_URL"),
    )
    host: str = Field(default="localhost", min_length=1, validation_alias=AliasChoices("HOST"))
    port: int = Field(default=3978, ge=1, le=65535, validation_alias=AliasChoices("PORT"))
    log_level: LogLevel = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL"))
    apps_file: Path | None = Field(default=None, validation_alias=AliasChoices("APPS_FILE"))
    recipes_file: Path | None = Field(default=None, validation_alias=AliasChoices("RECIPES_FILE"))
    token_encryption_keys: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TOKEN_ENCRYPTION_KEYS")
    )
    recipe_timeout_s: float = Field(
        default=20.0, gt=0, le=300, validation_alias=AliasChoices("RECIPE_TIMEOUT_SECONDS")
    )
    recipe_acknowledge_after_s: float = Field(
        default=2.0, ge=0, le=10, validation_alias=AliasChoices("RECIPE_ACKNOWLEDGE_AFTER_SECONDS")
    )
    signin_sweep_s: float = Field(
        default=30.0, ge=0, le=3600, validation_alias=AliasChoices("SIGNIN_SWEEP_SECONDS")
    )
    keep_alive_s: float = Field(
        default=300.0,
        ge=0,
        le=86400,
        validation_alias=AliasChoices("KEEP_ALIVE_SECONDS"),
        description="How often connections are refreshed ahead of need (0: never).",
    )
    workers: int | None = Field(
        default=None,
        validation_alias=AliasChoices("WORKERS"),
        description="Processes serving the port (1 to 64); unset: one per usable core with "
        "authentication on, else 1. `python app.py --workers N` wins over it.",
    )
    allowed_tenant_ids: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(),
        validation_alias=AliasChoices("ALLOWED_TENANT_IDS"),
        description="Tenant ids allowed to use the bot, or * for any tenant (multi-tenant).",
    )
    allowed_channel_ids: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset({"msteams"}),
        validation_alias=AliasChoices("ALLOWED_CHANNEL_IDS"),
        description="Bot Framework channels trusted to assert who a person is.",
    )

    # The admin console's sign-in (console/signin.py). Client id and secret default to the bot's
    # own registration; the redirect URI is PUBLIC_BASE_URL + /admin/callback.
    admin_client_id: str | None = Field(
        default=None, validation_alias=AliasChoices("ADMIN_CLIENT_ID")
    )
    admin_client_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ADMIN_CLIENT_SECRET")
    )
    admin_tenant_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ADMIN_TENANT_ID"),
        description="Entra tenant administrators sign in with (default: the bot's tenant, "
        "else any organization).",
    )
    admin_authority_host: AnyHttpUrl = Field(
        default=AnyHttpUrl("https://login.microsoftonline.com"),
        validation_alias=AliasChoices("ADMIN_AUTHORITY_HOST"),
    )
    admin_oidc_authority: AnyHttpUrl | None = Field(
        default=None,
        validation_alias=AliasChoices("ADMIN_OIDC_AUTHORITY"),
        description="Any OpenID Connect issuer instead of Entra ID (the sandbox's, for local "
        "use and the tests): https://host[:port]/<path>.",
    )

    # Slack (slack/surface.py): on when SLACK_SIGNING_SECRET is set; then the app's OAuth
    # client id and secret are required (workspaces install the app through OAuth v2).
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET")
    )
    slack_client_id: str | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_CLIENT_ID")
    )
    slack_client_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_CLIENT_SECRET")
    )
    slack_scopes: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        validation_alias=AliasChoices("SLACK_SCOPES"),
        description="Bot scopes asked for at install, comma-separated (default: the manifest's).",
    )
    slack_api_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("https://slack.com/api/"),
        validation_alias=AliasChoices("SLACK_API_URL"),
        description="Slack's Web API (another address only for tests).",
    )

    @field_validator("slack_scopes", mode="before")
    @classmethod
    def _split_scopes(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _slack_complete(self) -> Settings:
        if self.slack_signing_secret is None or not self.slack_signing_secret.get_secret_value():
            return self
        if not self.slack_client_id or self.slack_client_secret is None:
            raise ValueError(messages.SETTING_SLACK_INCOMPLETE)
        return self

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_signing_secret and self.slack_signing_secret.get_secret_value())

    @field_validator("apps_file", "recipes_file")
    @classmethod
    def _apps_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(messages.SETTING_NOT_A_FILE.format(path=value))
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _workers_in_range(cls, value: Any) -> Any:
        return worker_count(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("app_id", "app_tenant_id", "admin_client_id", "admin_tenant_id", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("allowed_tenant_ids", "allowed_channel_ids", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("allowed_tenant_ids")
    @classmethod
    def _any_tenant_alone(cls, value: frozenset[str]) -> frozenset[str]:
        if ANY_TENANT in value and len(value) > 1:
            raise ValueError(messages.SETTING_ANY_TENANT_ALONE)
        return value

    @field_validator("allowed_channel_ids")
    @classmethod
    def _some_channel(cls, value: frozenset[str]) -> frozenset[str]:
        if not value:
            raise ValueError(messages.SETTING_NO_CHANNEL)
        return value

    @model_validator(mode="after")
    def _credentials_complete(self) -> Settings:
        if self.app_id is None:
            return self
        if self.app_type != "UserAssignedMSI" and (
            self.app_password is None or not self.app_password.get_secret_value()
        ):
            raise ValueError(messages.SETTING_APP_CREDENTIALS_REQUIRED)
        if self.app_type in ("SingleTenant", "UserAssignedMSI") and not self.app_tenant_id:
            raise ValueError(messages.SETTING_APP_TENANT_REQUIRED.format(app_type=self.app_type))
        return self

    @model_validator(mode="after")
    def _fail_closed(self) -> Settings:
        """Refuse configurations that would silently let anyone act as anyone."""
        if self.app_id is None:
            if not is_loopback_host(self.host):
                raise ValueError(messages.SETTING_HOST_REFUSED.format(host=self.host))
            return self
        if not self.allowed_tenant_ids:
            raise ValueError(messages.SETTING_TENANTS_REQUIRED)
        if self.mongodb_uri is None or not self.mongodb_uri.get_secret_value().strip():
            raise ValueError(messages.SETTING_MONGODB_REQUIRED)
        return self

    @model_validator(mode="after")
    def _console_sign_in_complete(self) -> Settings:
        authority = self.admin_oidc_authority
        if authority is not None:
            if authority.scheme != "https" or not (authority.path or "").strip("/"):
                raise ValueError(messages.SETTING_OIDC_AUTHORITY_SHAPE)
            if not self.console_client_id or not self.console_client_secret:
                raise ValueError(messages.SETTING_CONSOLE_CLIENT_REQUIRED)
        elif self.admin_client_id and not self.console_client_secret:
            raise ValueError(messages.SETTING_CONSOLE_CLIENT_REQUIRED)
        return self

    @property
    def console_client_id(self) -> str | None:
        """The app registration administrators sign in to the console with."""
        return self.admin_client_id or self.app_id

    @property
    def console_client_secret(self) -> str | None:
        secret = self.admin_client_secret or (
            self.app_password if not self.admin_client_id else None
        )
        return secret.get_secret_value() if secret is not None else None

    @property
    def console_sign_in(self) -> Literal["entra", "oidc", "link"]:
        """How administrators sign in: Entra ID, another OpenID Connect issuer, or (neither
        configured) a one-time link from `python -m admin console-link`, on loopback only."""
        if self.admin_oidc_authority is not None:
            return "oidc"
        if self.console_client_id and self.console_client_secret:
            return "entra"
        return "link"

    @property
    def console_authority(self) -> str:
        """The msal authority (Entra ID) or oidc_authority (another issuer) to sign in at."""
        if self.admin_oidc_authority is not None:
            return str(self.admin_oidc_authority).rstrip("/")
        tenant = self.admin_tenant_id or self.app_tenant_id or "organizations"
        return f"{str(self.admin_authority_host).rstrip('/')}/{tenant}"

    @property
    def console_redirect_uri(self) -> str:
        return f"{str(self.public_base_url).rstrip('/')}/admin/callback"

    @property
    def console_over_https(self) -> bool:
        """Cookies are `Secure` (and `__Host-` prefixed) when the public address is HTTPS."""
        return self.public_base_url.scheme == "https"

    @property
    def encryption_keys(self) -> list[str]:
        """TOKEN_ENCRYPTION_KEYS split on commas, newest first."""
        if self.token_encryption_keys is None:
            return []
        raw = self.token_encryption_keys.get_secret_value()
        return [key.strip() for key in raw.split(",") if key.strip()]

    @property
    def bot_authority(self) -> str:
        """Where msal gets the bot's own token (an Entra ID authority, or the issuer in
        `BOT_TOKEN_AUTHORITY`)."""
        if self.bot_token_authority is not None:
            return str(self.bot_token_authority).rstrip("/")
        tenant = self.app_tenant_id if self.app_type == "SingleTenant" else "botframework.com"
        return f"https://login.microsoftonline.com/{tenant}"

    @property
    def auth_enabled(self) -> bool:
        """Bot Framework authentication is on exactly when an app id is configured."""
        return self.app_id is not None

    def tenant_allowed(self, tenant_id: str | None) -> bool:
        """True when the tenant may use the bot.

        `*` admits every tenant; so does an empty list, which only a local bot (authentication
        off, loopback only) can have.
        """
        if not self.allowed_tenant_ids or ANY_TENANT in self.allowed_tenant_ids:
            return True
        return bool(tenant_id) and tenant_id in self.allowed_tenant_ids

    def channel_allowed(self, channel_id: str | None) -> bool:
        """True for the channels trusted to assert who a person is (Teams by default)."""
        return bool(channel_id) and channel_id in self.allowed_channel_ids


def is_loopback_host(host: str | None) -> bool:
    """True for a host name or address that only this machine can reach."""
    if not host:
        return False
    name = host.strip().strip("[]").casefold()
    if name in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def worker_count(value: Any) -> int | None:
    """A number of worker processes, 1 to 64, from WORKERS or `--workers`; blank is unset.

    Raises:
        ValueError: anything else, with the sentence to show.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ValueError(messages.SETTING_WORKERS_RANGE)
    if not 1 <= number <= 64:
        raise ValueError(messages.SETTING_WORKERS_RANGE)
    return number


def _variable_name(location: str) -> str:
    """The environment variable a person set (or should set) for an error's location."""
    for name, field in Settings.model_fields.items():
        aliases = field.validation_alias
        choices = [str(a) for a in aliases.choices] if isinstance(aliases, AliasChoices) else []
        if location == name or location in choices:
            present = {key.casefold() for key in os.environ}
            for choice in choices:
                if choice.casefold() in present:
                    return choice
            return choices[0] if choices else name.upper()
    return location


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning a validation failure into one readable sentence.

    Args:
        overrides: field values that win over the environment (tests pass `_env_file=None`).

    Returns:
        The validated settings.

    Raises:
        SettingsError: naming the variable that is missing or invalid.
    """
    try:
        return Settings(**overrides)
    except ValidationError as error:
        first = error.errors()[0]
        location = first.get("loc") or ()
        name = str(location[0]) if location else ""
        variable = _variable_name(name) if name else ""
        message = str(first.get("msg", messages.SETTING_INVALID_DETAIL)).removeprefix(
            "Value error, "
        )
        if variable:
            raise SettingsError(
                messages.SETTING_INVALID.format(variable=variable, detail=message)
            ) from None
        # Errors across several fields already name their variables.
        raise SettingsError(messages.SETTINGS_INVALID.format(detail=message)) from None
