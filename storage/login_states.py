"""Pending sign-ins (collection `login_states`): single-use, expiring, bound to one person.

A record is created when the bot sends a Login card (step `started`), consumed exactly once by
the OAuth callback (`started` → `awaiting_code`, a conditional update: the modified count says
who won), then holds the encrypted tokens and account until the person proves, with the
verification code, that they are the one who signed in (`awaiting_code` → `done`).

Only hashes of the state and of the verification code are stored; the PKCE verifier and the
pending tokens are encrypted. `expires_at` is checked in every query; the TTL index only cleans
up later. No multi-document transactions (a standalone mongod refuses them).

Methods:
    ensure_indexes()
    create(...) -> LoginState         (replaces the person's pending one for that parent)
    find_by_state(state_hash) -> LoginState | None  (any step, expired or not)
    claim_for_callback(state_hash) -> LoginState | None
    fail(login_id)
    attach_result(login_id=, tokens=, account=, api_base_url=, scopes=, code_hash=) -> bool
    pending_for(owner) -> list[LoginState]
    find_by_code(owner=, code_hash=) -> LoginState | None
    complete(login_id) -> bool
    discard_pending(owner=, parent_id=None) -> int
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import BaseModel, ConfigDict
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from storage.models import EncryptedTokens, Owner, ProviderAccount

Document = dict[str, Any]
LIFETIME = timedelta(minutes=10)


class Step(StrEnum):
    STARTED = "started"
    AWAITING_CODE = "awaiting_code"
    DONE = "done"
    FAILED = "failed"
    DISCARDED = "discarded"


PENDING_STEPS = (Step.STARTED.value, Step.AWAITING_CODE.value)


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
    created_at: datetime
    expires_at: datetime

    @classmethod
    def from_document(cls, document: Document) -> LoginState:
        data = dict(document)
        data["id"] = str(data.pop("_id"))
        if data.get("parent_id") is not None:
            data["parent_id"] = str(data["parent_id"])
        return cls.model_validate(data)


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
        """Store a new pending sign-in, discarding the person's earlier one for that parent."""
        now = now or datetime.now(UTC)
        if parent_id is not None:
            await self.discard_pending(owner=owner, parent_id=parent_id)
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

    async def pending_for(self, owner: Owner) -> list[LoginState]:
        """The person's sign-ins that are still under way and not expired."""
        cursor = self._states.find(
            {
                **_owner_filter(owner),
                "purpose": {"$ne": "parent"},
                "step": {"$in": list(PENDING_STEPS)},
                **_live(datetime.now(UTC)),
            }
        )
        return [LoginState.from_document(document) async for document in cursor]

    async def find_by_code(self, *, owner: Owner, code_hash: str) -> LoginState | None:
        """The person's unexpired sign-in with that code (awaiting it, or already done)."""
        document = await self._states.find_one(
            {
                **_owner_filter(owner),
                "purpose": {"$ne": "parent"},
                "code_hash": code_hash,
                "step": {"$in": [Step.AWAITING_CODE.value, Step.DONE.value]},
                **_live(datetime.now(UTC)),
            }
        )
        return LoginState.from_document(document) if document else None

    async def get(self, login_id: str) -> LoginState | None:
        document = await self._states.find_one({"_id": ObjectId(login_id)})
        return LoginState.from_document(document) if document else None

    async def discard(self, login_id: str) -> None:
        await self._states.update_one(
            {"_id": ObjectId(login_id), "step": {"$in": list(PENDING_STEPS)}},
            {"$set": {"step": Step.DISCARDED.value}, "$unset": {"verifier": "", "tokens": ""}},
        )

    async def complete(self, login_id: str) -> bool:
        """Mark a verified sign-in done; only one caller ever gets True."""
        result = await self._states.update_one(
            {"_id": ObjectId(login_id), "step": Step.AWAITING_CODE.value},
            {
                "$set": {"step": Step.DONE.value, "completed_at": datetime.now(UTC)},
                "$unset": {"tokens": ""},
            },
        )
        return result.modified_count == 1

    async def discard_pending(self, *, owner: Owner, parent_id: str | None = None) -> int:
        """Drop the person's pending sign-ins (all, or for one parent)."""
        query: Document = {
            **_owner_filter(owner),
            "purpose": {"$ne": "parent"},
            "step": {"$in": list(PENDING_STEPS)},
        }
        if parent_id is not None:
            query["parent_id"] = ObjectId(parent_id)
        result = await self._states.update_many(
            query,
            {"$set": {"step": Step.DISCARDED.value}, "$unset": {"verifier": "", "tokens": ""}},
        )
        return result.modified_count
