"""Named leases (collection `leases`): one holder at a time across all processes.

Used by periodic jobs (the sign-in expiry sweeper) so that only one process does a round.
A lease expires by itself, so a crashed holder never blocks the others for long.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]


class LeaseStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._leases = collection

    async def take(self, name: str, *, holder: str, until: datetime, now: datetime) -> bool:
        """Take the lease `name` unless another holder's lease is still running."""
        try:
            result = await self._leases.update_one(
                {"_id": name, "$or": [{"until": {"$lte": now}}, {"holder": holder}]},
                {"$set": {"holder": holder, "until": until}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # the lease exists and someone else holds it
        return result.modified_count == 1 or result.upserted_id is not None
