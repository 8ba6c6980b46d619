"""Recipe runs (collection `recipe_runs`): who ran what, as whom it acted, and how it ended.

A run is keyed by the Teams activity that asked for it (a unique index), so a Teams retry of the
same activity finds the existing run instead of acting twice. Secret arguments are never stored.

A running run holds a lease (`lease_until`) and keeps its arguments sealed until it ends, and
`action_sent_at` is set just before its action goes to the app. When a process dies mid-run,
the lease runs out and the sweeper takes the run over (`claim_stranded`): it resumes a run whose
action was never sent, exactly once, and ends one whose action may have been sent as
`unknown`, telling the person once, never sending it again. A run's end and its audit event are
one update (its outbox, see storage/outbox.py).

Runs are read as `RecipeRun` models (ids as 24-hex strings).

Its methods are listed, with what each does, in `storage.protocols.RecipeRunRecords`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pydantic import BaseModel, ConfigDict
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from storage.models import ConnectionKind, EncryptedTokens, Owner
from storage.outbox import push

Document = dict[str, Any]
WAITING = "waiting_for_sign_in"
RUNNING = "running"


class ActedAs(BaseModel):
    """The connection a run acted through, and the account it acted as."""

    model_config = ConfigDict(frozen=True)

    connection_id: str
    kind: ConnectionKind
    account: str
    owner: Owner


class RecipeRun(BaseModel):
    """One run (collection `recipe_runs`). `status` is "running", "waiting_for_sign_in", or how
    it ended (an outcome of the runner, or "cancelled", "expired", "unknown")."""

    model_config = ConfigDict(frozen=True)

    id: str
    recipe: str
    activity_key: str
    invoker: Owner
    # The arguments as typed, secret ones left out.
    inputs: dict[str, Any]
    # The serialized reference of the conversation the run was asked for in.
    conversation: dict[str, Any]
    verify_user_access: bool
    status: str
    acted_as: ActedAs | None = None
    # {"message": the sentence the person was told, or None}
    result: dict[str, Any] | None = None
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: float | None = None
    # Every argument, secrets included, sealed; kept only while the run may still go on.
    sealed_arguments: EncryptedTokens | None = None
    lease_until: datetime | None = None
    lease_holder: str | None = None
    action_sent_at: datetime | None = None
    wait_parent_id: str | None = None
    wait_expires_at: datetime | None = None

    @classmethod
    def from_document(cls, document: Document) -> RecipeRun:
        data = dict(document)
        data["id"] = str(data.pop("_id"))
        return cls.model_validate(data)


def _runs(documents: list[Document]) -> list[RecipeRun]:
    return [RecipeRun.from_document(document) for document in documents]


class RecipeRunStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._runs = collection

    async def ensure_indexes(self) -> None:
        await self._runs.create_index(
            [("activity_key", ASCENDING)], name="one_run_per_activity", unique=True
        )
        await self._runs.create_index(
            [("recipe", ASCENDING), ("started_at", ASCENDING)], name="by_recipe"
        )
        await self._runs.create_index(
            [
                ("status", ASCENDING),
                ("invoker.tenant_id", ASCENDING),
                ("invoker.aad_object_id", ASCENDING),
            ],
            name="waiting_by_invoker",
        )

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
        """Record a new run; None when this activity already has one (a Teams retry).

        `run_id`, chosen by the caller, makes a repeated attempt safe: when an earlier attempt
        was stored but its answer was lost, the run is found under that id and is the caller's.
        """
        document: Document = {
            "_id": ObjectId(run_id) if run_id else ObjectId(),
            "recipe": recipe,
            "activity_key": activity_key,
            "invoker": invoker.model_dump(),
            "inputs": inputs,
            "conversation": conversation,
            "verify_user_access": verify_user_access,
            "status": RUNNING,
            "acted_as": None,
            "result": None,
            "started_at": datetime.now(UTC),
            "finished_at": None,
            "duration_ms": None,
            "sealed_arguments": sealed_arguments,
            "lease_until": lease_until,
        }
        try:
            await self._runs.insert_one(document)
        except DuplicateKeyError:
            mine = await self._runs.find_one({"_id": document["_id"]}, projection={"_id": 1})
            return None if mine is None else str(document["_id"])
        return str(document["_id"])

    async def mark_sending(self, run_id: str) -> None:
        """The action is about to go to the app: from now on it may have been sent."""
        await self._runs.update_one(
            {"_id": ObjectId(run_id)}, {"$set": {"action_sent_at": datetime.now(UTC)}}
        )

    async def finish(
        self,
        run_id: str,
        *,
        status: str,
        acted_as: dict[str, Any] | None,
        result: dict[str, Any],
        event: Document | None = None,
    ) -> bool:
        """End a run (once): its outcome, its audit event, sealed arguments and lease dropped.

        Returns:
            False when the run had already ended (another process finished it).
        """
        run = await self._runs.find_one({"_id": ObjectId(run_id)}, projection={"started_at": 1})
        now = datetime.now(UTC)
        duration = None
        if run is not None:
            duration = round((now - run["started_at"]).total_seconds() * 1000, 1)
        update: Document = {
            "$set": {
                "status": status,
                "acted_as": acted_as,
                "result": result,
                "finished_at": now,
                "duration_ms": duration,
            },
            "$unset": {"sealed_arguments": "", "lease_until": "", "lease_holder": ""},
        }
        if event is not None:
            update |= push(event)
        changed = await self._runs.update_one(
            {"_id": ObjectId(run_id), "finished_at": None}, update
        )
        return changed.modified_count == 1

    async def wait_for_sign_in(
        self,
        run_id: str,
        *,
        parent_id: str,
        expires_at: datetime,
        sealed_arguments: dict[str, Any],
    ) -> None:
        """Park a run until its invoker has signed in (or the sign-in's lifetime is over).

        `sealed_arguments` is the encrypted form of every argument, secrets included, needed to
        resume; it is removed as soon as the run leaves this state."""
        await self._runs.update_one(
            {"_id": ObjectId(run_id), "status": RUNNING},
            {
                "$set": {
                    "status": WAITING,
                    "wait_parent_id": parent_id,
                    "wait_expires_at": expires_at,
                    "sealed_arguments": sealed_arguments,
                }
            },
        )

    async def waiting_for(self, *, owner: Owner, parent_id: str | None = None) -> list[RecipeRun]:
        """The person's runs waiting for sign-in, oldest first."""
        query: Document = {
            "status": WAITING,
            "invoker.tenant_id": owner.tenant_id,
            "invoker.aad_object_id": owner.aad_object_id,
        }
        if parent_id is not None:
            query["wait_parent_id"] = parent_id
        cursor = self._runs.find(query).sort([("started_at", ASCENDING), ("_id", ASCENDING)])
        return _runs([document async for document in cursor])

    async def claim_waiting(
        self, run_id: str, *, to: str, lease_until: datetime | None = None
    ) -> RecipeRun | None:
        """Move one waiting run on (to "running" to resume it, or to an end state); only one
        caller in all processes gets the run. Returns it as it was, sealed arguments included."""
        key = ObjectId(run_id)
        run = await self._runs.find_one({"_id": key, "status": WAITING})
        if run is None:
            return None
        if to == RUNNING:
            # Resumed: it keeps its sealed arguments, under a lease, until it ends.
            change: Document = {"$set": {"status": to, "lease_until": lease_until}}
        else:
            change = {"$set": {"status": to}, "$unset": {"sealed_arguments": ""}}
        result = await self._runs.update_one({"_id": key, "status": WAITING}, change)
        return RecipeRun.from_document(run) if result.modified_count == 1 else None

    async def stranded(self, *, now: datetime) -> list[RecipeRun]:
        """Runs whose process stopped mid-run: still running, lease run out."""
        cursor = self._runs.find({"status": RUNNING, "lease_until": {"$lte": now}})
        return _runs([document async for document in cursor])

    async def claim_stranded(
        self, run_id: str, *, holder: str, until: datetime, now: datetime
    ) -> RecipeRun | None:
        """Take over a stranded run (one process only); returns it, sealed arguments included."""
        key = ObjectId(run_id)
        result = await self._runs.update_one(
            {"_id": key, "status": RUNNING, "lease_until": {"$lte": now}},
            {"$set": {"lease_until": until, "lease_holder": holder}},
        )
        if result.modified_count != 1:
            return None
        run = await self._runs.find_one({"_id": key})
        return RecipeRun.from_document(run) if run is not None else None

    async def expired_waiting(self, *, now: datetime) -> list[RecipeRun]:
        """Runs whose sign-in was not completed within its lifetime."""
        cursor = self._runs.find({"status": WAITING, "wait_expires_at": {"$lte": now}})
        return _runs([document async for document in cursor])

    async def get(self, run_id: str) -> RecipeRun | None:
        document = await self._runs.find_one({"_id": ObjectId(run_id)})
        return RecipeRun.from_document(document) if document is not None else None

    @property
    def collection(self) -> AsyncCollection[Document]:
        return self._runs

    async def for_recipe(self, recipe: str) -> list[RecipeRun]:
        cursor = self._runs.find({"recipe": recipe}).sort([("started_at", ASCENDING)])
        return _runs([document async for document in cursor])
