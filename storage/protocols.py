"""What each store offers, as a `Protocol` per collection: the one list of its methods.

Services and surfaces may depend on these rather than on the MongoDB classes that implement
them (`storage/connections.py` and its siblings); `tests/test_store_protocols.py` checks that
every store implements its protocol, method by method, with the same parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from storage.admin_sessions import ABSOLUTE, IDLE, Administrator, AdminSession
from storage.admin_signins import PendingSignIn
from storage.connections import Change, ListedChange
from storage.login_states import LoginState, VoidReason
from storage.models import (
    Actor,
    AuditEvent,
    Connection,
    ConnectionKind,
    ConnectionStatus,
    EncryptedTokens,
    Owner,
    ProviderAccount,
)
from storage.privileges import Grant, PrincipalKind, Privilege
from storage.recipe_runs import RecipeRun

Document = dict[str, Any]


class ConnectionRecords(Protocol):
    """Parent and runtime connections (collection `connections`).

    Implemented by `storage.connections.ConnectionStore`.
    """

    async def ensure_indexes(self) -> None: ...

    async def create_parent(
        self,
        *,
        provider: str,
        owner: Owner,
        account: ProviderAccount | None,
        scopes: list[str] | None = None,
        api_base_url: str | None = None,
        tokens: EncryptedTokens | None = None,
        status: ConnectionStatus = ConnectionStatus.CONNECTED,
        name: str | None = None,
        tenant_id: str | None = None,
        actor: Actor | None = None,
    ) -> Connection:
        """Store a parent connection: a recipe's default account, authorized by an admin."""
        ...

    async def find_parent(self, name: str, *, tenant_id: str) -> Connection | None:
        """The parent stored under a configured name that serves `tenant_id` (newest first)."""
        ...

    async def parent_tenants(self, name: str) -> set[str]:
        """The tenants that have a parent stored under a configured name."""
        ...

    async def replace_parent_credentials(
        self,
        *,
        connection_id: str,
        account: ProviderAccount,
        tokens: EncryptedTokens,
        scopes: list[str],
        api_base_url: str | None,
        actor: Actor,
    ) -> Connection | None:
        """An operator authorized an existing parent again: new account and tokens, same id."""
        ...

    async def find_runtime(self, *, parent_id: str, owner: Owner) -> Connection | None:
        """The person's runtime connection under a parent, if any."""
        ...

    async def create_runtime(
        self,
        *,
        parent_id: str,
        owner: Owner,
        account: ProviderAccount | None,
        scopes: list[str] | None = None,
        api_base_url: str | None = None,
        tokens: EncryptedTokens | None = None,
        status: ConnectionStatus = ConnectionStatus.CONNECTED,
        actor: Actor | None = None,
        reach: dict[str, Any] | None = None,
    ) -> Connection:
        """Store one person's runtime connection under an existing parent."""
        ...

    async def upsert_runtime(
        self,
        *,
        parent_id: str,
        owner: Owner,
        account: ProviderAccount,
        tokens: EncryptedTokens,
        scopes: list[str],
        api_base_url: str | None,
        actor: Actor | None = None,
        reach: dict[str, Any] | None = None,
    ) -> tuple[Connection, Connection | None]:
        """Write a verified sign-in: update the person's connection for that parent, or create it,
        with its audit events (created; or reconnected, and account changed) in the same write.
        """
        ...

    async def take_refresh_lease(
        self, *, connection_id: str, holder: str, until: datetime, now: datetime
    ) -> bool:
        """Take the connection's refresh lease unless someone holds a live one (all processes)."""
        ...

    async def release_refresh_lease(self, *, connection_id: str, holder: str) -> None: ...

    async def store_refreshed_tokens(
        self, *, connection_id: str, holder: str, tokens: EncryptedTokens
    ) -> bool:
        """Save refreshed tokens, only while still holding the lease."""
        ...

    async def mark_needs_reauth(
        self, *, connection_id: str, error_code: str = "invalid_grant"
    ) -> bool:
        """The provider refused the refresh token: the person must sign in again. The record
        keeps why (a code and a time, never the provider's own words) and a notice to tell its
        owner; True only to the call that made the change."""
        ...

    async def refresh_tokens_issued_before(
        self, *, provider: str, before: datetime, limit: int
    ) -> list[str]:
        """Connected records of an app whose refresh token was issued before `before`."""
        ...

    async def access_tokens_expiring(
        self, *, before: datetime, providers: list[str], parents: bool, limit: int
    ) -> list[tuple[str, str]]:
        """Connected parents and records of `providers` whose access token expires before
        `before`, as (id, app)."""
        ...

    async def touch_used(self, *, connection_id: str, now: datetime) -> bool:
        """Record that a recipe used the connection at `now` (`last_used_at` only moves
        forward; not a change: no version, no audit event). True when it moved."""
        ...

    async def get(self, connection_id: str) -> Connection | None: ...

    async def get_for_owner(self, *, connection_id: str, owner: Owner) -> Connection | None:
        """The person's own runtime connection with that id, or None."""
        ...

    async def list_for_owner(self, *, owner: Owner) -> list[Connection]:
        """The person's runtime connections, by app then account then age."""
        ...

    async def list_all(self, *, kind: ConnectionKind | None = None) -> list[Connection]: ...

    async def disconnect_for_owner(self, *, connection_id: str, owner: Owner) -> Change:
        """Mark the person's connection Disconnected and drop its tokens, keeping the record."""
        ...

    async def disconnect(
        self, *, connection_id: str, owner: Owner, actor: Actor
    ) -> tuple[Change, Connection | None]:
        """Disconnect the person's connection: in one update the status, the tokens moved to a
        pending revocation, and the audit event. Returns the record as it was (tokens included)
        to the one call that changed it.
        """
        ...

    async def disconnect_listed(
        self, *, connection_id: str, owner: Owner, actor: Actor
    ) -> ListedChange:
        """`disconnect` for the person's own list, in one `find` (the list, the ownership check,
        the record as it was) and one conditional update; returns the list after it."""
        ...

    async def delete_listed(
        self, *, connection_id: str, owner: Owner, actor: Actor
    ) -> ListedChange:
        """`delete_for_owner` for the person's own list, in one `find` (with their tombstones:
        a retried Delete is UNCHANGED) and one conditional update; returns the list after it."""
        ...

    async def delete_for_owner(
        self, *, connection_id: str, owner: Owner, actor: Actor | None = None
    ) -> Connection | None:
        """Remove the person's runtime connection; returns it only to the call that removed it."""
        ...

    async def delete(
        self, connection_id: str, *, kind: ConnectionKind | None = None, actor: Actor | None = None
    ) -> Connection | None:
        """Remove any connection (operators), only of `kind` when given. A parent's runtime
        children stay stored.
        """
        ...

    async def needing_settlement(self, *, now: datetime, limit: int = 200) -> list[ObjectId]:
        """Records with events to record, a revocation due, or a tombstone to purge."""
        ...

    async def purge_tombstone(
        self, connection_id: ObjectId, *, record: dict[str, Any] | None = None
    ) -> bool:
        """Remove a deleted record once nothing about it is left to do and Teams can no longer
        retry the Delete (so a retried press is told "deleted", not "not found").
        """
        ...

    @property
    def collection(self) -> AsyncCollection[Document]: ...


class LoginStateRecords(Protocol):
    """Pending sign-ins (collection `login_states`).

    Implemented by `storage.login_states.LoginStateStore`.
    """

    async def ensure_indexes(self) -> None: ...

    async def create(
        self,
        *,
        state_hash: str,
        owner: Owner,
        conversation: dict[str, Any],
        parent_id: str | None,
        provider: str,
        verifier: EncryptedTokens,
        run_id: str | None = None,
        purpose: str = "runtime",
        now: datetime | None = None,
    ) -> LoginState:
        """Store a new pending sign-in (the caller voids the person's earlier one first)."""
        ...

    async def find_by_state(self, state_hash: str) -> LoginState | None: ...

    async def claim_for_callback(self, state_hash: str) -> LoginState | None:
        """Consume the state once: only the first callback within its lifetime gets the record."""
        ...

    async def fail(self, login_id: str) -> None: ...

    async def attach_result(
        self,
        *,
        login_id: str,
        tokens: EncryptedTokens,
        account: ProviderAccount,
        api_base_url: str | None,
        scopes: list[str],
        code_hash: str,
    ) -> bool:
        """Keep the exchanged tokens and account on the record until the code is verified."""
        ...

    async def pending_for(self, owner: Owner, parent_id: str | None = None) -> list[LoginState]:
        """The person's sign-ins still under way and not expired (all, or for one parent)."""
        ...

    async def claim_for_code(self, *, owner: Owner, attempt: str) -> list[LoginState]:
        """Claim the person's live records awaiting a code for one code attempt."""
        ...

    async def complete_claimed(self, login_id: str, *, attempt: str) -> bool:
        """The claimed record's code matched: done, and its pending tokens dropped."""
        ...

    async def release_claim(self, login_id: str, *, attempt: str) -> None:
        """Give back a record the attempt claimed but whose code it was not (another parent's sign-
        in, when the code matched a different one of the person's records).
        """
        ...

    async def find_used_code(self, *, owner: Owner, code_hash: str) -> LoginState | None:
        """The person's unexpired sign-in that was already completed with that code."""
        ...

    async def voided_by_wrong_code(self, owner: Owner) -> bool:
        """True while one of the person's sign-ins is being checked or was voided by a wrong code
        (so a code arriving now is answered "start again", not ignored).
        """
        ...

    async def get(self, login_id: str) -> LoginState | None: ...

    async def void(self, login: LoginState, *, reason: VoidReason) -> bool:
        """End a sign-in that is still under way; True only for the call that ended it."""
        ...

    async def with_revocation_due(self, *, now: datetime, limit: int = 100) -> list[ObjectId]:
        """Voided sign-ins whose grant is due for a revocation attempt."""
        ...

    @property
    def collection(self) -> AsyncCollection[Document]: ...

    async def complete_parent(self, login_id: str) -> bool:
        """An operator accepted the account of a parent sign-in: done, tokens dropped here."""
        ...

    async def expired_with_grants(self, *, now: datetime, limit: int = 100) -> list[LoginState]:
        """Expired sign-ins that still hold a grant from the provider (to revoke it)."""
        ...


class AuditRecords(Protocol):
    """The audit log (collection `audit_events`).

    Implemented by `storage.audit.AuditLog`.
    """

    async def ensure_indexes(self) -> None: ...

    @staticmethod
    def event(
        *,
        actor: Actor,
        action: str,
        connection: Connection | None = None,
        details: dict[str, Any] | None = None,
    ) -> Document:
        """An event document with its own id. Never pass tokens or codes in `details`."""
        ...

    async def record(
        self,
        *,
        actor: Actor,
        action: str,
        connection: Connection | None = None,
        details: dict[str, Any] | None = None,
    ) -> str:
        """Append one event and return its id. Never pass tokens or codes in `details`."""
        ...

    async def insert_event(self, document: Document) -> bool:
        """Append a prepared event (from an outbox) once: its id makes a repeat a no-op."""
        ...

    async def for_connection(self, connection_id: str) -> list[AuditEvent]: ...

    async def recent(self, *, limit: int = 50) -> list[AuditEvent]: ...

    @property
    def collection(self) -> AsyncCollection[Document]: ...


class LeaseRecords(Protocol):
    """Named leases shared by every process (collection `leases`).

    Implemented by `storage.leases.LeaseStore`.
    """

    async def take(self, name: str, *, holder: str, until: datetime, now: datetime) -> bool:
        """Take the lease `name` unless another holder's lease is still running."""
        ...


class RecipeSettingRecords(Protocol):
    """Per-recipe settings (collection `recipe_settings`).

    Implemented by `storage.recipe_settings.RecipeSettingsStore`.
    """

    async def ensure_indexes(self) -> None: ...

    async def seed(self, defaults: Mapping[str, bool]) -> int:
        """Insert the file's defaults for recipes the database does not know yet."""
        ...

    async def verify_user_access(self, recipe: str, *, default: bool) -> bool: ...

    async def set_verify_user_access(
        self, recipe: str, value: bool, *, changed_by: str, event: Document | None = None
    ) -> None:
        """Change the setting; `event`, its audit event, is written in the same update."""
        ...

    @property
    def collection(self) -> AsyncCollection[Document]: ...

    async def all(self) -> dict[str, bool]: ...


class RecipeRunRecords(Protocol):
    """Recipe runs (collection `recipe_runs`).

    Implemented by `storage.recipe_runs.RecipeRunStore`.
    """

    async def ensure_indexes(self) -> None: ...

    async def start(
        self,
        *,
        recipe: str,
        activity_key: str,
        invoker: Owner,
        inputs: dict[str, Any],
        conversation: dict[str, Any],
        verify_user_access: bool,
        sealed_arguments: dict[str, Any] | None = None,
        lease_until: datetime | None = None,
        run_id: str | None = None,
    ) -> str | None:
        """Record a new run; None when this activity already has one (a Teams retry)."""
        ...

    async def mark_sending(self, run_id: str) -> None:
        """The action is about to go to the app: from now on it may have been sent."""
        ...

    async def finish(
        self,
        run_id: str,
        *,
        status: str,
        acted_as: dict[str, Any] | None,
        result: dict[str, Any],
        event: Document | None = None,
    ) -> bool:
        """End a run (once): its outcome, its audit event, sealed arguments and lease dropped."""
        ...

    async def wait_for_sign_in(
        self, run_id: str, *, parent_id: str, expires_at: datetime, sealed_arguments: dict[str, Any]
    ) -> None:
        """Park a run until its invoker has signed in (or the sign-in's lifetime is over)."""
        ...

    async def waiting_for(self, *, owner: Owner, parent_id: str | None = None) -> list[RecipeRun]:
        """The person's runs waiting for sign-in, oldest first."""
        ...

    async def claim_waiting(
        self, run_id: str, *, to: str, lease_until: datetime | None = None
    ) -> RecipeRun | None:
        """Move one waiting run on (to "running" to resume it, or to an end state); only one caller
        in all processes gets the run. Returns it as it was, sealed arguments included.
        """
        ...

    async def stranded(self, *, now: datetime) -> list[RecipeRun]:
        """Runs whose process stopped mid-run: still running, lease run out."""
        ...

    async def claim_stranded(
        self, run_id: str, *, holder: str, until: datetime, now: datetime
    ) -> RecipeRun | None:
        """Take over a stranded run (one process only); returns it, sealed arguments included."""
        ...

    async def expired_waiting(self, *, now: datetime) -> list[RecipeRun]:
        """Runs whose sign-in was not completed within its lifetime."""
        ...

    async def get(self, run_id: str) -> RecipeRun | None: ...

    @property
    def collection(self) -> AsyncCollection[Document]: ...

    async def for_recipe(self, recipe: str) -> list[RecipeRun]: ...


class PrivilegeRecords(Protocol):
    """Who may do what in the admin console (collection `privileges`).

    Implemented by `storage.privileges.PrivilegeStore`.
    """

    async def ensure_indexes(self) -> None: ...

    async def grant(
        self,
        *,
        tenant_id: str,
        kind: PrincipalKind,
        principal: str,
        privileges: Iterable[Privilege],
        actor: Actor,
        name: str = "",
    ) -> Grant:
        """Add `privileges` to the principal's grant (created when it has none)."""
        ...

    async def revoke(
        self,
        *,
        tenant_id: str,
        kind: PrincipalKind,
        principal: str,
        privileges: Iterable[Privilege] | None,
        actor: Actor,
    ) -> bool:
        """Take `privileges` (None: all) from the principal; False when it held none of them."""
        ...

    async def list(self, *, tenant_id: str | None = None) -> list[Grant]:
        """Every grant (of one tenant), principals with no privilege left included."""
        ...

    async def held_by(
        self,
        *,
        tenant_id: str,
        object_id: str,
        groups: Iterable[str] = (),
        roles: Iterable[str] = (),
    ) -> frozenset[Privilege]:
        """What a signed-in administrator of `tenant_id` may do: their own grant, their groups' and
        their roles' (from their ID token), never another tenant's.
        """
        ...

    @property
    def collection(self) -> AsyncCollection[Document]: ...


class AdminSessionRecords(Protocol):
    """Admin console sessions (collection `admin_sessions`).

    Implemented by `storage.admin_sessions.AdminSessionStore`.
    """

    async def ensure_indexes(self) -> None: ...

    async def start(
        self,
        administrator: Administrator,
        *,
        now: datetime | None = None,
        idle: timedelta = IDLE,
        absolute: timedelta = ABSOLUTE,
    ) -> tuple[str, AdminSession]:
        """A new session; returns the id for the browser's cookie (never stored) and the session."""
        ...

    async def find(self, session_id: str, *, now: datetime | None = None) -> AdminSession | None:
        """The live session for a browser's id (its idle expiry renewed), or None."""
        ...

    async def end(self, session_id: str) -> bool:
        """Sign out this browser; True when a session was ended."""
        ...

    async def end_all(self, *, tenant_id: str, object_id: str) -> int:
        """Sign an administrator out everywhere; returns how many sessions ended."""
        ...

    @property
    def collection(self) -> AsyncCollection[Document]: ...


class AdminSignInRecords(Protocol):
    """Admin console sign-ins in progress and one-time links (collection `admin_signins`).

    Implemented by `storage.admin_signins.AdminSignInStore`.
    """

    async def ensure_indexes(self) -> None: ...

    async def save_flow(
        self,
        *,
        state: str,
        flow: EncryptedTokens,
        binding: str,
        return_to: str,
        now: datetime | None = None,
    ) -> None:
        """Keep a started flow for ten minutes under the hash of its state."""
        ...

    async def take_flow(self, state: str, now: datetime | None = None) -> PendingSignIn | None:
        """The live flow for a state, removed as it is read (None: unknown, expired or used)."""
        ...

    async def create_link(self, now: datetime | None = None) -> str:
        """A new one-time link token (returned once, only its hash is kept), valid 10 minutes."""
        ...

    async def take_link(self, token: str, now: datetime | None = None) -> bool:
        """True once for a live link token; False when unknown, expired or already used."""
        ...

    @property
    def collection(self) -> AsyncCollection[Document]: ...


class WelcomeRecords(Protocol):
    """Welcomes sent when the app is installed, each once (collection `welcomes`).

    Implemented by `storage.welcomes.WelcomeStore`.
    """

    async def ensure_indexes(self) -> None: ...

    async def claim(self, place: str, *, tenant_id: str, conversation_id: str, scope: str) -> bool:
        """Record the welcome of `place`'s current install; True when this call recorded it
        (the caller sends it), False when it was already welcomed."""
        ...

    async def end_generation(self, place: str, *, removal: str) -> bool:
        """The app was removed from `place`: its next install is welcomed again. `removal`
        identifies the removal, so a retried one counts once; True when it counted."""
        ...

    @property
    def collection(self) -> AsyncCollection[Document]: ...
