"""Pending sign-ins (collection `login_states`): single-use, expiring, bound to one person.

A record is created when the bot sends a Login card (step `started`), consumed exactly once by
the OAuth callback (`started` → `awaiting_code`, a conditional update: the modified count says
who won), then holds the encrypted tokens and account until the person proves, with the
verification code, that they are the one who signed in.

A code is checked in one atomic step per record: the attempt first claims the person's records
that await a code (`awaiting_code` → `verifying`, marked with the attempt's id), and only the
attempt that claimed a record compares its code with it. Forty codes sent at once therefore get
one comparison: the others find nothing to claim. A right code moves the record to `done`; a
wrong one voids it (`discarded`, with the reason), so the right code arriving later fails too.

Only hashes of the state and of the verification code are stored; the PKCE verifier and the
pending tokens are encrypted. `expires_at` is checked in every query; the TTL index only cleans
up later. No multi-document transactions (a standalone mongod refuses them).

Its methods are listed, with what each does, in `storage.protocols.LoginStateRecords`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import BaseModel, ConfigDict
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from storage import revocations
from storage.audit import SIGNIN_VOIDED, AuditLog
from storage.models import Actor, EncryptedTokens, Owner, ProviderAccount
from storage.outbox import push
from storage.revocations import REVOCATION

Document = dict[str, Any]
LIFETIME = timedelta(minutes=10)


class Step(StrEnum):
    STARTED = "started"
    AWAITING_CODE = "awaiting_code"
    VERIFYING = "verifying"  # claimed by one code attempt, which alone compares the code
    DONE = "done"
    FAILED = "failed"
    DISCARDED = "discarded"


PENDING_STEPS = (Step.STARTED.value, Step.AWAITING_CODE.value, Step.VERIFYING.value)
# Steps in which a record may hold a grant obtained from the provider.
GRANT_STEPS = (Step.AWAITING_CODE.value, Step.VERIFYING.value)


class VoidReason(StrEnum):
    """Why a pending sign-in was voided (kept on the record and in the audit log)."""

    WRONG_CODE = "wrong_code"
    CANCELLED = "cancelled"
    REPLACED = "replaced"  # a newer sign-in for the same person and parent
    EXPIRED = "expired"
    REJECTED = "rejected"  # an operator did not accept the account


class LoginState(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    state_hash: str
    step: Step
    owner: Owner
    conversation: dict[str, Any]
    parent_id: str | None
    provider: str
    # "runtime": a person connects their own account; "parent": an operator authorizes a
    # parent connection from the command line (verified there, never by a code in Teams).
    purpose: str = "runtime"
    run_id: str | None = None
    verifier: EncryptedTokens | None = None
    tokens: EncryptedTokens | None = None
    account: ProviderAccount | None = None
    api_base_url: str | None = None
    scopes: list[str] = []
    code_hash: str | None = None
    void_reason: str | None = None
    created_at: datetime
    expires_at: datetime

    @classmethod
    def from_document(cls, document: Document) -> LoginState:
        data = dict(document)
        data["id"] = str(data.pop("_id"))
        if data.get("parent_id") is not None:
            data["parent_id"] = str(data["parent_id"])
        return cls.model_validate(data)


def voided_by(login: LoginState) -> Actor:
    """Whom a voided sign-in's audit event names: the operator of a parent sign-in, or the
    person."""
    if login.purpose == "parent":
        return Actor.operator(login.owner.name)
    return Actor.person(login.owner)


def void_event(document: Document, result: str, attempts: int) -> Document:
    """The `signin.voided` audit event of a voided sign-in record (as stored): why, for which
    app and sign-in, and what became of its grant at the provider (`result`)."""
    login = LoginState.from_document(document)
    actor = (document.get(REVOCATION) or {}).get("actor")
    return AuditLog.event(
        actor=Actor.model_validate(actor) if actor else voided_by(login),
        action=SIGNIN_VOIDED,
        details={
            "reason": login.void_reason,
            "app": login.provider,
            "login_id": login.id,
            "revocation": result,
            **({"attempts": attempts} if attempts else {}),
        },
    )


def _owner_filter(owner: Owner) -> Document:
    return {"owner.tenant_id": owner.tenant_id, "owner.aad_object_id": owner.aad_object_id}


def _live(now: datetime) -> Document:
    return {"expires_at": {"$gt": now}}


class LoginStateStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._states = collection

    async def ensure_indexes(self) -> None:
        await self._states.create_index([("state_hash", ASCENDING)], name="by_state", unique=True)
        await self._states.create_index(
            [
                ("owner.tenant_id", ASCENDING),
                ("owner.aad_object_id", ASCENDING),
                ("step", ASCENDING),
            ],
            name="by_owner_step",
        )
        await self._states.create_index(
            [("expires_at", ASCENDING)], name="cleanup", expireAfterSeconds=3600
        )

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
        now = now or datetime.now(UTC)
        document: Document = {
            "_id": ObjectId(),
            "state_hash": state_hash,
            "step": Step.STARTED.value,
            "owner": owner.model_dump(),
            "conversation": conversation,
            "parent_id": ObjectId(parent_id) if parent_id else None,
            "provider": provider,
            "purpose": purpose,
            "run_id": run_id,
            "verifier": verifier.model_dump(),
            "tokens": None,
            "account": None,
            "api_base_url": None,
            "scopes": [],
            "code_hash": None,
            "created_at": now,
            "expires_at": now + LIFETIME,
        }
        await self._states.insert_one(document)
        return LoginState.from_document(document)

    async def find_by_state(self, state_hash: str) -> LoginState | None:
        document = await self._states.find_one({"state_hash": state_hash})
        return LoginState.from_document(document) if document else None

    async def claim_for_callback(self, state_hash: str) -> LoginState | None:
        """Consume the state once: only the first callback within its lifetime gets the record."""
        now = datetime.now(UTC)
        result = await self._states.update_one(
            {"state_hash": state_hash, "step": Step.STARTED.value, **_live(now)},
            {"$set": {"step": Step.AWAITING_CODE.value, "claimed_at": now}},
        )
        if result.modified_count != 1:
            return None
        return await self.find_by_state(state_hash)

    async def fail(self, login_id: str) -> None:
        await self._states.update_one(
            {"_id": ObjectId(login_id), "step": {"$in": list(PENDING_STEPS)}},
            {"$set": {"step": Step.FAILED.value}, "$unset": {"verifier": "", "tokens": ""}},
        )

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
        result = await self._states.update_one(
            {
                "_id": ObjectId(login_id),
                "step": Step.AWAITING_CODE.value,
                "code_hash": None,
                **_live(datetime.now(UTC)),
            },
            {
                "$set": {
                    "tokens": tokens.model_dump(),
                    "account": account.model_dump(),
                    "api_base_url": api_base_url,
                    "scopes": scopes,
                    "code_hash": code_hash,
                },
                "$unset": {"verifier": ""},
            },
        )
        return result.modified_count == 1

    async def pending_for(self, owner: Owner, parent_id: str | None = None) -> list[LoginState]:
        """The person's sign-ins still under way and not expired (all, or for one parent)."""
        query: Document = {
            **_owner_filter(owner),
            "purpose": {"$ne": "parent"},
            "step": {"$in": list(PENDING_STEPS)},
            **_live(datetime.now(UTC)),
        }
        if parent_id is not None:
            query["parent_id"] = ObjectId(parent_id)
        return [LoginState.from_document(document) async for document in self._states.find(query)]

    async def claim_for_code(self, *, owner: Owner, attempt: str) -> list[LoginState]:
        """Claim the person's live records awaiting a code for one code attempt.

        Each record is claimed by exactly one attempt (a conditional update per document), so
        however many codes arrive at once, each record is compared with one of them only.
        """
        now = datetime.now(UTC)
        await self._states.update_many(
            {
                **_owner_filter(owner),
                "purpose": {"$ne": "parent"},
                "step": Step.AWAITING_CODE.value,
                **_live(now),
            },
            {"$set": {"step": Step.VERIFYING.value, "attempt": attempt, "attempted_at": now}},
        )
        cursor = self._states.find(
            {**_owner_filter(owner), "step": Step.VERIFYING.value, "attempt": attempt}
        )
        return [LoginState.from_document(document) async for document in cursor]

    async def complete_claimed(self, login_id: str, *, attempt: str) -> bool:
        """The claimed record's code matched: done, and its pending tokens dropped."""
        result = await self._states.update_one(
            {"_id": ObjectId(login_id), "step": Step.VERIFYING.value, "attempt": attempt},
            {
                "$set": {"step": Step.DONE.value, "completed_at": datetime.now(UTC)},
                "$unset": {"tokens": ""},
            },
        )
        return result.modified_count == 1

    async def release_claim(self, login_id: str, *, attempt: str) -> None:
        """Give back a record the attempt claimed but whose code it was not (another parent's
        sign-in, when the code matched a different one of the person's records)."""
        await self._states.update_one(
            {"_id": ObjectId(login_id), "step": Step.VERIFYING.value, "attempt": attempt},
            {"$set": {"step": Step.AWAITING_CODE.value}, "$unset": {"attempt": ""}},
        )

    async def find_used_code(self, *, owner: Owner, code_hash: str) -> LoginState | None:
        """The person's unexpired sign-in that was already completed with that code."""
        document = await self._states.find_one(
            {
                **_owner_filter(owner),
                "purpose": {"$ne": "parent"},
                "code_hash": code_hash,
                "step": Step.DONE.value,
                **_live(datetime.now(UTC)),
            }
        )
        return LoginState.from_document(document) if document else None

    async def voided_by_wrong_code(self, owner: Owner) -> bool:
        """True while one of the person's sign-ins is being checked or was voided by a wrong
        code (so a code arriving now is answered "start again", not ignored)."""
        document = await self._states.find_one(
            {
                **_owner_filter(owner),
                "purpose": {"$ne": "parent"},
                "$or": [
                    {"step": Step.VERIFYING.value},
                    {"step": Step.DISCARDED.value, "void_reason": VoidReason.WRONG_CODE.value},
                ],
                **_live(datetime.now(UTC)),
            },
            projection={"_id": 1},
        )
        return document is not None

    async def get(self, login_id: str) -> LoginState | None:
        document = await self._states.find_one({"_id": ObjectId(login_id)})
        return LoginState.from_document(document) if document else None

    async def void(self, login: LoginState, *, reason: VoidReason) -> bool:
        """End a sign-in that is still under way; True only for the call that ended it.

        The same update keeps a grant the sign-in held for one purpose, its revocation
        (storage/revocations.py), whose end records `signin.voided`; a wrong code that voids a
        sign-in without a grant records the event at once. So a crash right after this update
        leaves the grant to the sweep, never alive and forgotten.
        """
        for _ in range(3):
            now = datetime.now(UTC)
            sealed = login.tokens.model_dump() if login.tokens is not None else None
            update: Document = {
                "$set": {
                    "step": Step.DISCARDED.value,
                    "void_reason": reason.value,
                    "voided_at": now,
                },
                "$unset": {"verifier": "", "tokens": ""},
            }
            if sealed is not None:
                update["$set"][REVOCATION] = revocations.pending(
                    sealed, login.provider, voided_by(login), now
                )
            elif reason is VoidReason.WRONG_CODE:
                voided = login.model_dump(exclude={"id"}) | {
                    "_id": ObjectId(login.id),
                    "void_reason": reason.value,
                }
                update |= push(void_event(voided, "nothing_to_revoke", 0))
            # The tokens seen must still be the record's: one attached a moment ago by the
            # callback is revoked too, never dropped unseen.
            result = await self._states.update_one(
                {
                    "_id": ObjectId(login.id),
                    "step": {"$in": list(PENDING_STEPS)},
                    "tokens": sealed,
                },
                update,
            )
            if result.modified_count == 1:
                return True
            current = await self.get(login.id)
            if current is None or current.step not in PENDING_STEPS:
                return False
            login = current
        return False

    async def with_revocation_due(self, *, now: datetime, limit: int = 100) -> list[ObjectId]:
        """Voided sign-ins whose grant is due for a revocation attempt."""
        cursor = self._states.find(revocations.due_filter(now), projection={"_id": 1}).limit(limit)
        return [document["_id"] async for document in cursor]

    @property
    def collection(self) -> AsyncCollection[Document]:
        return self._states

    async def complete_parent(self, login_id: str) -> bool:
        """An operator accepted the account of a parent sign-in: done, tokens dropped here."""
        result = await self._states.update_one(
            {"_id": ObjectId(login_id), "purpose": "parent", "step": Step.AWAITING_CODE.value},
            {
                "$set": {"step": Step.DONE.value, "completed_at": datetime.now(UTC)},
                "$unset": {"tokens": ""},
            },
        )
        return result.modified_count == 1

    async def expired_with_grants(self, *, now: datetime, limit: int = 100) -> list[LoginState]:
        """Expired sign-ins that still hold a grant from the provider (to revoke it)."""
        cursor = self._states.find(
            {
                "step": {"$in": list(GRANT_STEPS)},
                "tokens": {"$ne": None},
                "expires_at": {"$lte": now},
            }
        ).limit(limit)
        return [LoginState.from_document(document) async for document in cursor]
