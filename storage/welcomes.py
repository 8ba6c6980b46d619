"""Welcomes sent when the app is installed (collection `welcomes`): each one exactly once.

Teams announces one install twice (`installationUpdate` and `conversationUpdate`) and retries
activities, and several processes may receive them at once. A welcome is therefore recorded
before it is sent, under a key unique by construction (the document's `_id`): the place (a
person's 1:1 chat, or a team or group chat) and the place's install generation. Whoever inserts
it sends the welcome; everyone else gets a `DuplicateKeyError` and sends nothing.

A removal of the app from a 1:1 chat ends the place's generation (a small counter document of
the same collection), so the next install is welcomed again. The removal's activity key is kept
so a retried removal does not end the next generation too.

The welcome record (place, tenant, conversation, time) is the audit of a welcome: no separate
audit event is written for it.

Its methods are listed, with what each does, in `storage.protocols.WelcomeRecords`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]

_WELCOME = "welcome"
_GENERATION = "generation"


def _generation_id(place: str) -> str:
    return f"{_GENERATION}|{place}"


def _welcome_id(place: str, generation: int) -> str:
    # The generation is the last part and a number, so the key reads back unambiguously.
    return f"{_WELCOME}|{place}|{generation}"


class WelcomeStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._welcomes = collection

    async def ensure_indexes(self) -> None:
        # Keyed by `_id` (unique by nature): nothing else to index.
        return None

    async def claim(self, place: str, *, tenant_id: str, conversation_id: str, scope: str) -> bool:
        """Record the welcome of `place`'s current install; True when this call recorded it
        (the caller sends it), False when it was already welcomed."""
        counter = await self._welcomes.find_one({"_id": _generation_id(place)})
        generation = counter.get("generation") if counter is not None else 0
        if not isinstance(generation, int) or isinstance(generation, bool):
            generation = 0
        try:
            await self._welcomes.insert_one(
                {
                    "_id": _welcome_id(place, generation),
                    "kind": _WELCOME,
                    "place": place,
                    "generation": generation,
                    "tenant_id": tenant_id,
                    "conversation_id": conversation_id,
                    "scope": scope,
                    "welcomed_at": datetime.now(UTC),
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def end_generation(self, place: str, *, removal: str) -> bool:
        """The app was removed from `place`: its next install is welcomed again. `removal`
        identifies the removal, so a retried one counts once; True when it counted."""
        try:
            result = await self._welcomes.update_one(
                {"_id": _generation_id(place), "last_removal": {"$ne": removal}},
                {
                    "$inc": {"generation": 1},
                    "$set": {
                        "kind": _GENERATION,
                        "last_removal": removal,
                        "removed_at": datetime.now(UTC),
                    },
                },
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # this removal was counted already
        return result.modified_count == 1 or result.upserted_id is not None

    @property
    def collection(self) -> AsyncCollection[Document]:
        return self._welcomes
