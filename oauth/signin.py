"""Verified runtime sign-in: from a Login card to a runtime user connection that is provably
the person's own.

1. `start` stores a pending sign-in bound to the person and conversation and returns the URL of
   the Login card's button (`/auth/start?state=…`).
2. `authorize_redirect` (GET /auth/start) sends the browser to the provider, with PKCE.
3. `complete_callback` (GET /auth/callback) consumes the state once, exchanges the code, reads
   the account and keeps the encrypted tokens on the sign-in record with a fresh 6-digit code.
   No connection is written yet.
4. `verify` (Teams' `signin/verifyState`, or the code typed in the chat) matches the code for
   the person who sends it; only then is the runtime connection written. A link forwarded to
   someone else therefore cannot attach their account to the first person.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pymongo.errors import PyMongoError

import messages
from oauth.client import (
    OAuthRejected,
    ProviderUnavailable,
    TokenSet,
    api_base_url,
    authorization_url,
    exchange_code,
    fetch_account,
    new_code_verifier,
)
from oauth.providers import Provider, ProviderRegistry
from oauth.revocations import ATTEMPT_TIMEOUT_S, Revocations
from oauth.tokens import GrantRevoker
from storage.audit import AuditLog
from storage.connections import ConnectionStore, serves
from storage.crypto import TokenCipher
from storage.database import Database
from storage.login_states import LoginState, LoginStateStore, Step, VoidReason, void_event
from storage.models import Actor, Connection, EncryptedTokens, Owner
from storage.outbox import drain

log = logging.getLogger(__name__)

CODE_DIGITS = 6
CANCELLED_BY_USER = "CancelledByUser"


def hash_state(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def hash_code(owner: Owner, code: str) -> str:
    """The stored form of a verification code, bound to the person it was made for."""
    material = f"{owner.tenant_id}\x1f{owner.aad_object_id}\x1f{code}".encode()
    return hashlib.sha256(material).hexdigest()


def new_verification_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def looks_like_code(text: str) -> bool:
    return len(text) == CODE_DIGITS and text.isdigit()


class CallbackFailure(StrEnum):
    """Why a callback wrote nothing; each reason has its HTTP status and page text."""

    INVALID_STATE = "invalid_state"
    EXPIRED_STATE = "expired_state"
    MISSING_CODE = "missing_code"
    INVALID_CODE = "invalid_code"
    ACCESS_DENIED = "access_denied"
    PROVIDER_ERROR = "provider_error"
    STORAGE_ERROR = "storage_error"

    @property
    def status(self) -> int:
        return _FAILURE_STATUS[self]

    @property
    def message(self) -> str:
        return messages.SIGNIN_FAILURES[self.value]


_FAILURE_STATUS = {
    CallbackFailure.INVALID_STATE: 400,
    CallbackFailure.EXPIRED_STATE: 410,
    CallbackFailure.MISSING_CODE: 400,
    CallbackFailure.INVALID_CODE: 400,
    CallbackFailure.ACCESS_DENIED: 403,
    CallbackFailure.PROVIDER_ERROR: 502,
    CallbackFailure.STORAGE_ERROR: 503,
}


class SignInError(Exception):
    def __init__(self, failure: CallbackFailure) -> None:
        super().__init__(failure.value)
        self.failure = failure


@dataclass(frozen=True)
class CallbackResult:
    code: str
    app_name: str
    purpose: str = "runtime"


class Verification(StrEnum):
    CONNECTED = "connected"  # a new or updated runtime connection
    ALREADY_USED = "already_used"  # a code that was verified before: nothing changes
    WRONG_CODE = "wrong_code"  # pending sign-ins were discarded
    CANCELLED = "cancelled"  # the person cancelled: pending sign-ins were discarded
    NOTHING_PENDING = "nothing_pending"  # not a sign-in code for this person


@dataclass(frozen=True)
class VerifyResult:
    outcome: Verification
    connection: Connection | None = None
    login: LoginState | None = None
    app_name: str = ""


@dataclass(frozen=True)
class SignInService:
    """Starts, completes and verifies runtime sign-ins."""

    providers: ProviderRegistry
    connections: ConnectionStore
    login_states: LoginStateStore
    audit: AuditLog
    cipher: TokenCipher
    public_base_url: str
    # Revokes a grant (sealed tokens of an app) at its provider; see oauth.tokens.
    revoke_grant: GrantRevoker | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, compare=False, repr=False)

    @property
    def revocations(self) -> Revocations:
        return Revocations(self.revoke_grant, self.audit)

    @classmethod
    def over(
        cls,
        database: Database,
        *,
        providers: ProviderRegistry,
        cipher: TokenCipher,
        public_base_url: str,
        revoke_grant: GrantRevoker | None = None,
    ) -> SignInService:
        """The service over an open database's stores (the bot and the operator CLI alike)."""
        return cls(
            providers=providers,
            connections=database.connections,
            login_states=database.login_states,
            audit=database.audit,
            cipher=cipher,
            public_base_url=public_base_url.rstrip("/"),
            revoke_grant=revoke_grant,
        )

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_base_url}/auth/callback"

    def provider_for(self, parent: Connection) -> Provider | None:
        return self.providers.get(parent.provider)

    async def start(
        self,
        *,
        owner: Owner,
        parent: Connection,
        conversation: dict[str, Any],
        run_id: str | None = None,
    ) -> str:
        """Store a pending sign-in for this person and parent; returns the Login button's URL.

        Args:
            owner: the person who must sign in (the only one who can complete it).
            parent: the parent connection the runtime connection will belong to.
            conversation: the serialized conversation reference to answer in.
            run_id: the recipe run to resume afterwards, if any.
        """
        if not serves(parent, owner):
            # Never a sign-in under a parent of another tenant (or under a runtime connection).
            raise ValueError("sign-in needs a parent connection of the person's tenant")
        # At most one pending sign-in per person and parent: a new one replaces the old.
        for earlier in await self.login_states.pending_for(owner, parent_id=parent.id):
            await self.void(earlier, VoidReason.REPLACED)
        state = secrets.token_urlsafe(32)
        await self.login_states.create(
            state_hash=hash_state(state),
            owner=owner,
            conversation=conversation,
            parent_id=parent.id,
            provider=parent.provider,
            verifier=self.cipher.seal_text(new_code_verifier()),
            run_id=run_id,
        )
        return f"{self.public_base_url}/auth/start?state={state}"

    async def start_parent(self, *, app_key: str, operator: Owner) -> tuple[str, str]:
        """An operator's sign-in for a new parent connection of app `app_key`.

        Returns:
            The pending sign-in's id (to watch from the command line) and the URL to open.
        """
        if self.providers.get(app_key) is None:
            raise ValueError(f"no app {app_key!r} is configured in APPS_FILE")
        state = secrets.token_urlsafe(32)
        login = await self.login_states.create(
            state_hash=hash_state(state),
            owner=operator,
            conversation={},
            parent_id=None,
            provider=app_key,
            verifier=self.cipher.seal_text(new_code_verifier()),
            purpose="parent",
        )
        return login.id, f"{self.public_base_url}/auth/start?state={state}"

    async def authorize_redirect(self, state: str | None) -> str:
        """The provider URL to send the browser to, for a live `started` sign-in."""
        login = await self._live_login(state)
        if login.step.value != "started":
            raise SignInError(CallbackFailure.INVALID_STATE)
        provider = self.providers.get(login.provider)
        if provider is None or login.verifier is None:
            raise SignInError(CallbackFailure.PROVIDER_ERROR)
        verifier = self.cipher.open_text(login.verifier) if provider.pkce else None
        assert state is not None
        return authorization_url(
            provider, redirect_uri=self.redirect_uri, state=state, code_verifier=verifier
        )

    async def _live_login(self, state: str | None) -> LoginState:
        if not state or len(state) > 200:
            raise SignInError(CallbackFailure.INVALID_STATE)
        try:
            login = await self.login_states.find_by_state(hash_state(state))
        except PyMongoError:
            raise SignInError(CallbackFailure.STORAGE_ERROR) from None
        if login is None:
            raise SignInError(CallbackFailure.INVALID_STATE)
        if login.expires_at <= datetime.now(UTC):
            raise SignInError(CallbackFailure.EXPIRED_STATE)
        return login

    async def complete_callback(
        self, *, state: str | None, code: str | None, error: str | None
    ) -> CallbackResult:
        """The OAuth callback as a straight line of guard clauses.

        Raises:
            SignInError: with the named reason; nothing is stored in that case.
        """
        await self._live_login(state)
        assert state is not None
        try:
            login = await self.login_states.claim_for_callback(hash_state(state))
        except PyMongoError:
            raise SignInError(CallbackFailure.STORAGE_ERROR) from None
        if login is None:  # used before, or expired a moment ago
            raise SignInError(CallbackFailure.INVALID_STATE)
        provider = self.providers.get(login.provider)
        if provider is None or login.verifier is None:
            await self.login_states.fail(login.id)
            raise SignInError(CallbackFailure.PROVIDER_ERROR)
        if error:
            await self.login_states.fail(login.id)
            if error == "access_denied":
                raise SignInError(CallbackFailure.ACCESS_DENIED)
            raise SignInError(CallbackFailure.PROVIDER_ERROR)
        if not code:
            await self.login_states.fail(login.id)
            raise SignInError(CallbackFailure.MISSING_CODE)

        verifier = self.cipher.open_text(login.verifier)
        tokens = None
        try:
            tokens = await exchange_code(
                provider, code=code, redirect_uri=self.redirect_uri, code_verifier=verifier
            )
            account = await fetch_account(provider, tokens)
        except OAuthRejected as rejected:
            await self._abandon_grant(login, tokens)
            log.info(messages.LOG_SIGNIN_REJECTED, provider.key, rejected.error)
            raise SignInError(CallbackFailure.INVALID_CODE) from None
        except ProviderUnavailable as unavailable:
            await self._abandon_grant(login, tokens)
            log.warning(messages.LOG_PROVIDER_UNAVAILABLE, provider.key, unavailable)
            raise SignInError(CallbackFailure.PROVIDER_ERROR) from None

        verification_code = new_verification_code()
        try:
            attached = await self.login_states.attach_result(
                login_id=login.id,
                tokens=self.cipher.seal(tokens.as_record()),
                account=account,
                api_base_url=api_base_url(provider, tokens),
                scopes=tokens.scopes,
                code_hash=hash_code(login.owner, verification_code),
            )
        except PyMongoError:
            attached = False
        if not attached:
            await self._abandon_grant(login, tokens)
            raise SignInError(CallbackFailure.STORAGE_ERROR)
        return CallbackResult(code=verification_code, app_name=provider.name, purpose=login.purpose)

    async def verify(self, *, owner: Owner, code: str) -> VerifyResult:
        """Check a verification code sent by `owner`; write the connection on success.

        The code is compared only with records this call claimed in one atomic step, so of many
        codes sent at once for one sign-in, one is compared; a wrong one voids the sign-in (its
        grant revoked at the provider) and a right one arriving later fails too.
        """
        if code == CANCELLED_BY_USER:
            cancelled = await self.void_pending(owner, VoidReason.CANCELLED)
            return VerifyResult(
                Verification.CANCELLED if cancelled else Verification.NOTHING_PENDING
            )
        code_hash = hash_code(owner, code) if looks_like_code(code) else None
        if code_hash is not None:
            used = await self.login_states.find_used_code(owner=owner, code_hash=code_hash)
            if used is not None:
                return VerifyResult(
                    Verification.ALREADY_USED,
                    login=used,
                    app_name=self.providers.display_name(used.provider),
                )
        attempt = secrets.token_hex(16)
        claimed = await self.login_states.claim_for_code(owner=owner, attempt=attempt)
        match = next(
            (
                login
                for login in claimed
                if code_hash is not None and hmac.compare_digest(login.code_hash or "", code_hash)
            ),
            None,
        )
        if match is not None:
            for other in claimed:
                if other.id != match.id:
                    await self.login_states.release_claim(other.id, attempt=attempt)
            app_name = self.providers.display_name(match.provider)
            if not await self.login_states.complete_claimed(match.id, attempt=attempt):
                return VerifyResult(Verification.ALREADY_USED, login=match, app_name=app_name)
            connection = await self._store_connection(owner, match)
            return VerifyResult(
                Verification.CONNECTED, connection=connection, login=match, app_name=app_name
            )
        # No match: every sign-in this attempt claimed is void, and so are those still waiting
        # for the browser part. Records another attempt is checking right now are its own.
        unclaimed = [
            login
            for login in await self.login_states.pending_for(owner)
            if login.step is Step.STARTED
        ]
        for login in [*claimed, *unclaimed]:
            await self.void(login, VoidReason.WRONG_CODE)
        if claimed or unclaimed or await self.login_states.voided_by_wrong_code(owner):
            return VerifyResult(Verification.WRONG_CODE)
        return VerifyResult(Verification.NOTHING_PENDING)

    async def void_pending(self, owner: Owner, reason: VoidReason) -> int:
        """Void every sign-in the person has under way; returns how many this call ended."""
        ended = 0
        for login in await self.login_states.pending_for(owner):
            ended += await self.void(login, reason)
        return ended

    async def void(self, login: LoginState, reason: VoidReason) -> bool:
        """End a pending sign-in; True when this call ended it. A grant it held is revoked at
        the provider after the answer (recorded first, so a crash only delays it), and the
        revocation's end records `signin.voided`."""
        if not await self.login_states.void(login, reason=reason):
            return False
        self._settle_later(login.id)
        return True

    async def sweep(self, *, now: datetime | None = None) -> int:
        """Void expired sign-ins that still hold a grant, and attempt every revocation that is
        due; returns how many sign-ins were looked at."""
        moment = now or datetime.now(UTC)
        expired = await self.login_states.expired_with_grants(now=moment)
        for login in expired:
            await self.login_states.void(login, reason=VoidReason.EXPIRED)
        due = await self.login_states.with_revocation_due(now=moment)
        for login_id in due:
            await self._settle(login_id)
        return len(expired) + len(due)

    async def close(self) -> None:
        """Let background revocations finish (bounded) at shutdown; the sweep covers the rest."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=ATTEMPT_TIMEOUT_S)

    def _settle_later(self, login_id: str) -> None:
        task = asyncio.create_task(self._settle(ObjectId(login_id)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, login_id: ObjectId) -> None:
        collection = self.login_states.collection
        try:
            await self.revocations.attempt_due(collection, login_id, void_event)
            await drain(collection, login_id, self.audit)
        except Exception:  # the void itself is safe; the sweep finishes it
            log.warning(messages.LOG_SETTLE_DEFERRED, exc_info=True)

    async def _revoke(self, app_key: str, sealed: EncryptedTokens | None) -> str:
        if sealed is None:
            return "nothing_to_revoke"
        if self.revoke_grant is None:
            return "failed"
        return str(await self.revoke_grant(app_key, sealed))

    async def _abandon_grant(self, login: LoginState, tokens: TokenSet | None) -> None:
        """A callback that cannot finish: the record fails, and tokens already issued for it
        are revoked rather than left alive at the provider."""
        await self.login_states.fail(login.id)
        if tokens is not None:
            await self._revoke(login.provider, self.cipher.seal(tokens.as_record()))

    async def _store_connection(self, owner: Owner, login: LoginState) -> Connection:
        assert login.tokens is not None and login.account is not None
        assert login.parent_id is not None
        # The record keeps the names Teams sent with this activity (they may have changed).
        person = owner.model_copy(
            update={"teams_user_id": owner.teams_user_id or login.owner.teams_user_id}
        )
        # The connection and its audit events are one write; the events are then recorded.
        connection, _ = await self.connections.upsert_runtime(
            parent_id=login.parent_id,
            owner=person,
            account=login.account,
            tokens=login.tokens,
            scopes=login.scopes,
            api_base_url=login.api_base_url,
            actor=Actor.person(owner),
            # Where the person can be told if this connection breaks later.
            reach=login.conversation or None,
        )
        try:
            await drain(self.connections.collection, ObjectId(connection.id), self.audit)
        except PyMongoError:
            log.warning(messages.LOG_SETTLE_DEFERRED)  # the sweep records them
        return connection
