"""Per-recipe settings (collection `recipe_settings`): "Verify user access at runtime".

The database wins: a recipe's setting is seeded from the recipes file only when absent, and is
read on every run, so a change takes effect on the next run without a restart.

Its methods are listed, with what each does, in `storage.protocols.RecipeSettingRecords`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from storage.outbox import push

Document = dict[str, Any]


class RecipeSettingsStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._settings = collection

    async def ensure_indexes(self) -> None:
        # Keyed by the recipe key in _id: nothing else to index.
        return None

    async def seed(self, defaults: Mapping[str, bool]) -> int:
        """Insert the file's defaults for recipes the database does not know yet."""
        if not defaults:
            return 0
        now = datetime.now(UTC)
        result = await self._settings.bulk_write(
            [
                UpdateOne(
                    {"_id": key},
                    {
                        "$setOnInsert": {
                            "verify_user_access": value,
                            "updated_at": now,
                            "updated_by": "recipes file",
                        }
                    },
                    upsert=True,
                )
                for key, value in defaults.items()
            ]
        )
        return result.upserted_count

    async def verify_user_access(self, recipe: str, *, default: bool) -> bool:
        document = await self._settings.find_one({"_id": recipe})
        if document is None or not isinstance(document.get("verify_user_access"), bool):
            return default
        return bool(document["verify_user_access"])

    async def set_verify_user_access(
        self, recipe: str, value: bool, *, changed_by: str, event: Document | None = None
    ) -> None:
        """Change the setting; `event`, its audit event, is written in the same update."""
        update: Document = {
            "$set": {
                "verify_user_access": value,
                "updated_at": datetime.now(UTC),
                "updated_by": changed_by,
            }
        }
        if event is not None:
            update |= push(event)
        await self._settings.update_one({"_id": recipe}, update, upsert=True)

    @property
    def collection(self) -> AsyncCollection[Document]:
        return self._settings

    async def all(self) -> dict[str, bool]:
        return {
            str(document["_id"]): bool(document.get("verify_user_access"))
            async for document in self._settings.find({})
        }
