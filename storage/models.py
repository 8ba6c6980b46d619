"""Record models stored in MongoDB: connections (parent and runtime) and audit events.

Ids are MongoDB ObjectIds in the database and their 24-hex strings everywhere else. Teams and
Entra ids inside `Owner` are opaque strings: the Agents Playground's are not GUIDs.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import BaseModel, ConfigDict, Field


class ConnectionKind(StrEnum):
    """A parent is authorized once by an admin; a runtime connection is one person's own."""

    PARENT = "parent"
    RUNTIME = "runtime"
    # A removed record kept only until its revocation and audit are finished; never shown,
    # never used, and outside the one-runtime-connection-per-person index.
    DELETED = "deleted"


LIVE_KINDS = (ConnectionKind.PARENT.value, ConnectionKind.RUNTIME.value)


class ConnectionStatus(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    NEEDS_REAUTH = "needs_reauth"


class Owner(BaseModel):
    """The person a connection belongs to; (tenant_id, aad_object_id) identifies them."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    aad_object_id: str
    teams_user_id: str = ""
    name: str = ""


class ProviderAccount(BaseModel):
    """Who signed in at the provider: its account id and a name a person recognises."""

    model_config = ConfigDict(frozen=True)

    id: str
    display_name: str


class EncryptedTokens(BaseModel):
    """Access/refresh tokens and expiry as one ciphertext, with the id of the key that sealed it."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    ciphertext: bytes
    # When the access token inside expires: not a secret, kept readable so that a background
    # job can find tokens about to expire without opening every record.
    expires_at: datetime | None = None


class LastError(BaseModel):
    """Why a connection needs signing in again: a code and when, never a provider's words."""

    model_config = ConfigDict(frozen=True)

    code: str
    at: datetime


class Connection(BaseModel):
    """One connection record (collection `connections`)."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: ConnectionKind
    provider: str
    # Parents: the configured name recipes refer to (see APPS_FILE [parents]).
    name: str | None = None
    # Parents: the one tenant whose people the parent serves. None (a record from before
    # parents were tenant-bound) serves nobody until an operator authorizes it again.
    tenant_id: str | None = None
    parent_id: str | None = None
    owner: Owner
    account: ProviderAccount | None = None
    status: ConnectionStatus
    scopes: list[str] = Field(default_factory=list)
    tokens: EncryptedTokens | None = None
    api_base_url: str | None = None
    refresh_lease_until: datetime | None = None
    version: int = 1
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None = None
    last_refreshed_at: datetime | None = None
    # Why it needs signing in again: {"code": ..., "at": ...}, never a provider's raw answer.
    last_error: LastError | None = None
    # When the stored refresh token was issued (sign-in or last refresh): a provider that
    # expires unused refresh tokens counts from here.
    tokens_issued_at: datetime | None = None
    # Where the owner can be told about this connection (the conversation their sign-in came
    # from, as the surface that signed them in wrote it); opaque to the store.
    reach: dict[str, Any] | None = None

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Connection:
        data = dict(document)
        data["id"] = str(data.pop("_id"))
        if isinstance(data.get("parent_id"), ObjectId):
            data["parent_id"] = str(data["parent_id"])
        return cls.model_validate(data)

    @property
    def account_label(self) -> str:
        return self.account.display_name if self.account else "unknown account"


class Actor(BaseModel):
    """Who caused an audited change: a person in Teams, or an operator at the command line."""

    model_config = ConfigDict(frozen=True)

    # "person" | "operator" | "administrator" (signed in to the admin console) | "bot"
    kind: str
    tenant_id: str = ""
    aad_object_id: str = ""
    name: str = ""

    @classmethod
    def person(cls, owner: Owner) -> Actor:
        return cls(
            kind="person",
            tenant_id=owner.tenant_id,
            aad_object_id=owner.aad_object_id,
            name=owner.name,
        )

    @classmethod
    def operator(cls, name: str) -> Actor:
        return cls(kind="operator", name=name)

    @classmethod
    def bot(cls) -> Actor:
        """The bot itself (its background jobs: keeping connections alive, telling people)."""
        return cls(kind="bot", name="the bot")

    def is_owner(self, owner: Owner) -> bool:
        """True when this actor is the person who owns the connection."""
        return (
            self.kind == "person"
            and self.tenant_id == owner.tenant_id
            and self.aad_object_id == owner.aad_object_id
        )

    @classmethod
    def administrator(cls, *, tenant_id: str, object_id: str, name: str) -> Actor:
        return cls(kind="administrator", tenant_id=tenant_id, aad_object_id=object_id, name=name)


class AuditEvent(BaseModel):
    """One line of the audit trail (collection `audit_events`)."""

    model_config = ConfigDict(frozen=True)

    id: str
    at: datetime
    actor: Actor
    action: str
    connection_id: str | None = None
    provider: str | None = None
    account: str | None = None
    # Whose connection it was, and whose data the event is about (absent on older events).
    owner: Owner | None = None
    tenant_id: str = ""
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> AuditEvent:
        data = dict(document)
        data["id"] = str(data.pop("_id"))
        if isinstance(data.get("connection_id"), ObjectId):
            data["connection_id"] = str(data["connection_id"])
        return cls.model_validate(data)
