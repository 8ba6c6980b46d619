"""Admin console sign-ins under way (collection `admin_signins`): single use, ten minutes.

Two kinds of record, both keyed by the SHA-256 of a secret the browser holds, never the secret:

- `flow`: an msal authorization code flow between `/admin/` and the identity provider's
  redirect back, keyed by its `state`. The flow itself (PKCE verifier and nonce included) is
  sealed with the token cipher; the hash of the browser's binding cookie ties it to the
  browser that started it.
- `link`: a one-time sign-in link printed by `python -m admin console-link` (link mode only).

Taking a record deletes it in the same step (`find_one_and_delete`), so of two concurrent
callbacks or clicks only one gets it. Every take checks `expires_at` itself; the TTL index
only cleans up.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from storage.models import EncryptedTokens

Document = dict[str, Any]
COLLECTION = "admin_signins"
LIFETIME = timedelta(minutes=10)
FLOW: Literal["flow"] = "flow"
LINK: Literal["link"] = "link"


def secret_hash(value: str) -> str:
    """The stored form of a state, binding or link token (hex SHA-256)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class PendingSignIn(BaseModel):
    """A taken flow: the sealed msal flow, whom it is bound to and where to go afterwards."""

    model_config = ConfigDict(frozen=True)

    flow: EncryptedTokens
    binding_hash: str
    return_to: str
    created_at: datetime
    expires_at: datetime


class AdminSignInStore:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._signins = collection

    async def ensure_indexes(self) -> None:
        # Records are useless once expired; every take checks expires_at in its query anyway.
        await self._signins.create_index(
            [("expires_at", ASCENDING)], name="cleanup", expireAfterSeconds=0
        )

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
        moment = now or datetime.now(UTC)
        await self._signins.insert_one(
            {
                "_id": secret_hash(state),
                "kind": FLOW,
                "flow": flow.model_dump(),
                "binding_hash": secret_hash(binding),
                "return_to": return_to,
                "created_at": moment,
                "expires_at": moment + LIFETIME,
            }
        )

    async def take_flow(self, state: str, now: datetime | None = None) -> PendingSignIn | None:
        """The live flow for a state, removed as it is read (None: unknown, expired or used)."""
        moment = now or datetime.now(UTC)
        document = await self._signins.find_one_and_delete(
            {"_id": secret_hash(state), "kind": FLOW, "expires_at": {"$gt": moment}}
        )
        return PendingSignIn.model_validate(document) if document is not None else None

    async def create_link(self, now: datetime | None = None) -> str:
        """A new one-time link token (returned once, only its hash is kept), valid 10 minutes."""
        moment = now or datetime.now(UTC)
        token = secrets.token_urlsafe(32)
        await self._signins.insert_one(
            {
                "_id": secret_hash(token),
                "kind": LINK,
                "created_at": moment,
                "expires_at": moment + LIFETIME,
            }
        )
        return token

    async def take_link(self, token: str, now: datetime | None = None) -> bool:
        """True once for a live link token; False when unknown, expired or already used."""
        moment = now or datetime.now(UTC)
        document = await self._signins.find_one_and_delete(
            {"_id": secret_hash(token), "kind": LINK, "expires_at": {"$gt": moment}}
        )
        return document is not None

    @property
    def collection(self) -> AsyncCollection[Document]:
        return self._signins
