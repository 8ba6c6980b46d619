"""Slack app installations and OAuth states in MongoDB, for Bolt's async OAuth flow.

`MongoInstallationStore` keeps what Bolt's OAuth flow saves (collections `slack_installations`
and `slack_bots`) with the semantics of slack_sdk's own stores (sqlite3, SQLAlchemy, file):

* every save adds a record, and a find returns the latest one (by `installed_at`) for the
  enterprise, the workspace and, when asked, the user; saving the same installation again (token
  rotation copies it, `installed_at` included) replaces that record instead of adding one;
* for an org-wide install (`is_enterprise_install`) the workspace is ignored: the record belongs
  to the Enterprise Grid organisation and is stored and found with no team id;
* a user's installation is returned with the workspace's latest bot token (bolt-python#664), so
  a bot token refreshed or reinstalled since the user installed is the one used;
* deleting removes every matching record and is a no-op when there is none.

Every token, refresh token and the incoming webhook URL (a bearer credential) is sealed with the
`TokenCipher` and stored as the sealed value's `model_dump()` under its own field name, so
`storage.crypto.reencrypt(collection, cipher, fields=INSTALLATION_SECRETS)` (or `BOT_SECRETS`)
re-seals them after a key rotation. Everything else is stored in clear: ids, names, scopes and
the expiry times, which a job may query without opening anything. A record the configured keys
cannot open raises `TokenDecryptionError` rather than passing for "not installed".

`MongoOAuthStateStore` issues the OAuth `state` values (collection `slack_oauth_states`): only
their SHA-256 is stored, and consuming one is a single `find_one_and_delete` that also checks
the expiry, so a state is accepted once, however many callbacks race for it. The TTL index only
cleans up later.

Ids that are not strings (or None) match nothing: they never reach a query as operators. Nothing
secret is logged: ids and counts at most, never a token, a webhook URL or a state.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from storage.crypto import TokenCipher
from storage.models import EncryptedTokens

log = logging.getLogger(__name__)

Document = dict[str, Any]

INSTALLATIONS_COLLECTION = "slack_installations"
BOTS_COLLECTION = "slack_bots"
STATES_COLLECTION = "slack_oauth_states"

# The fields sealed at rest (also the `fields` to give `storage.crypto.reencrypt`).
INSTALLATION_SECRETS = (
    "bot_token",
    "bot_refresh_token",
    "user_token",
    "user_refresh_token",
    "incoming_webhook_url",
)
BOT_SECRETS = ("bot_token", "bot_refresh_token")

# What the latest bot of a workspace replaces on a user's installation (as slack_sdk's stores).
CARRIED_BOT_FIELDS = (
    "bot_id",
    "bot_user_id",
    "bot_token",
    "bot_scopes",
    "bot_refresh_token",
    "bot_token_expires_at",
)

# "Latest" is by `installed_at`; `_id` breaks ties between records of the same millisecond
# (BSON dates keep milliseconds), so the one saved last wins as with slack_sdk's file store.
LATEST_FIRST = [("installed_at", DESCENDING), ("_id", DESCENDING)]


def _fields_of(model: type) -> frozenset[str]:
    """The keyword arguments the model's constructor takes that `to_dict()` also gives.

    `*_expires_in` are left out (`to_dict()` gives `*_expires_at`, which wins anyway) and so is
    `custom_values`, kept under a key of its own: `to_dict()` flattens custom values among the
    standard ones, and the constructor would refuse them as unknown keyword arguments.
    """
    parameters = inspect.signature(model.__init__).parameters
    return frozenset(
        name
        for name in parameters
        if name not in ("self", "custom_values") and not name.endswith("_expires_in")
    )


INSTALLATION_FIELDS = _fields_of(Installation)
BOT_FIELDS = _fields_of(Bot)


def _valid_id(value: object) -> bool:
    return value is None or isinstance(value, str)


def _norm(value: object) -> str | None:
    # "" and None both mean "none" (the sqlite3 store stores both as ""), so one query finds
    # records saved either way.
    return value if isinstance(value, str) and value else None


class MongoInstallationStore(AsyncInstallationStore):
    """Bolt's installation store over `slack_installations` and `slack_bots`.

    Args:
        installations: the `slack_installations` collection.
        bots: the `slack_bots` collection.
        cipher: seals the tokens and the incoming webhook URL.
        client_id: the Slack app's client id; every record is stored and looked up under it, so
            two apps can share the collections.
        logger: the logger Bolt is given (`logger` property); this module's by default.
    """

    def __init__(
        self,
        *,
        installations: AsyncCollection[Document],
        bots: AsyncCollection[Document],
        cipher: TokenCipher,
        client_id: str,
        logger: logging.Logger | None = None,
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("client_id must be a non-empty string")
        self._installations = installations
        self._bots = bots
        self._cipher = cipher
        self.client_id = client_id
        self._logger = logger or log

    def __repr__(self) -> str:
        return f"MongoInstallationStore(client_id={self.client_id!r})"

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    async def ensure_indexes(self) -> None:
        """The indexes the finds (equality on the ids, newest first) and deletions use."""
        workspace = [
            ("client_id", ASCENDING),
            ("enterprise_id", ASCENDING),
            ("team_id", ASCENDING),
        ]
        await self._installations.create_index(
            [*workspace, *LATEST_FIRST], name="latest_by_workspace"
        )
        await self._installations.create_index(
            [*workspace, ("user_id", ASCENDING), *LATEST_FIRST], name="latest_by_user"
        )
        await self._bots.create_index([*workspace, *LATEST_FIRST], name="latest_by_workspace")

    # --- saving ---------------------------------------------------------------------------

    async def async_save(self, installation: Installation) -> None:
        document = self._document(
            installation.to_dict(),
            fields=INSTALLATION_FIELDS,
            secrets_=INSTALLATION_SECRETS,
            is_enterprise_install=installation.is_enterprise_install,
        )
        await self._installations.replace_one(
            self._same_record(document, with_user=True), document, upsert=True
        )
        self._logger.debug(
            "Saved a Slack installation (enterprise %s, team %s, user %s)",
            document["enterprise_id"],
            document["team_id"],
            document["user_id"],
        )
        # As slack_sdk's stores: the bot of an installation is also kept on its own.
        await self.async_save_bot(installation.to_bot())

    async def async_save_bot(self, bot: Bot) -> None:
        if bot.bot_token is None:
            # A user-only installation has no bot to keep (slack_sdk's stores skip it too).
            self._logger.debug("Not saving a Slack bot without a bot token")
            return
        document = self._document(
            bot.to_dict(),
            fields=BOT_FIELDS,
            secrets_=BOT_SECRETS,
            is_enterprise_install=bot.is_enterprise_install,
        )
        await self._bots.replace_one(
            self._same_record(document, with_user=False), document, upsert=True
        )
        self._logger.debug(
            "Saved a Slack bot (enterprise %s, team %s)",
            document["enterprise_id"],
            document["team_id"],
        )

    def _document(
        self,
        values: Mapping[str, Any],
        *,
        fields: frozenset[str],
        secrets_: tuple[str, ...],
        is_enterprise_install: bool,
    ) -> Document:
        """The stored form of `to_dict()`: standard fields, custom values apart, secrets sealed."""
        document: Document = {"client_id": self.client_id}
        custom: Document = {}
        for name, value in values.items():
            if name in fields:
                document[name] = value
            else:
                custom[name] = value
        document["custom_values"] = custom
        document["enterprise_id"] = _norm(document.get("enterprise_id"))
        # An org-wide install belongs to the organisation, not to the workspace it was started
        # from: stored without a team so that it is found (and deleted) by enterprise id alone.
        document["team_id"] = None if is_enterprise_install else _norm(document.get("team_id"))
        for name in secrets_:
            clear = document.get(name)
            document[name] = self._cipher.seal_text(clear).model_dump() if clear else None
        return document

    def _same_record(self, document: Document, *, with_user: bool) -> Document:
        # The record a save replaces: the same installation saved again (token rotation copies
        # it with its `installed_at`). Any other save adds a record, as with slack_sdk's stores.
        query: Document = {
            "client_id": self.client_id,
            "enterprise_id": document["enterprise_id"],
            "team_id": document["team_id"],
            "installed_at": document["installed_at"],
        }
        if with_user:
            query["user_id"] = document.get("user_id")
        return query

    # --- finding --------------------------------------------------------------------------

    def _workspace(
        self, enterprise_id: object, team_id: object, is_enterprise_install: object = False
    ) -> Document | None:
        """The query for one workspace or org, or None when an id is not a string."""
        if not (_valid_id(enterprise_id) and _valid_id(team_id)):
            self._logger.debug("Slack store called with a non-string id; nothing matches")
            return None
        return {
            "client_id": self.client_id,
            "enterprise_id": _norm(enterprise_id),
            "team_id": None if is_enterprise_install else _norm(team_id),
        }

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        query = self._workspace(enterprise_id, team_id, is_enterprise_install)
        if query is None:
            return None
        document = await self._bots.find_one(query, sort=LATEST_FIRST)
        if document is None:
            return None
        return Bot(**self._values(document, fields=BOT_FIELDS, secrets_=BOT_SECRETS))

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        query = self._workspace(enterprise_id, team_id, is_enterprise_install)
        if query is None or not _valid_id(user_id):
            return None
        if user_id is not None:
            query["user_id"] = user_id
        document = await self._installations.find_one(query, sort=LATEST_FIRST)
        if document is None:
            return None
        installation = Installation(
            **self._values(document, fields=INSTALLATION_FIELDS, secrets_=INSTALLATION_SECRETS)
        )
        if user_id is not None or installation.bot_token is None:
            # The user may have installed before the bot was last (re)installed or refreshed:
            # carry the workspace's latest bot, as slack_sdk's stores do (bolt-python#664).
            bot = await self.async_find_bot(
                enterprise_id=enterprise_id,
                team_id=team_id,
                is_enterprise_install=is_enterprise_install,
            )
            if bot is not None and bot.bot_token != installation.bot_token:
                for name in CARRIED_BOT_FIELDS:
                    setattr(installation, name, getattr(bot, name))
        return installation

    def _values(
        self, document: Document, *, fields: frozenset[str], secrets_: tuple[str, ...]
    ) -> Document:
        """The constructor's keyword arguments from a stored record, secrets opened."""
        values: Document = {name: document[name] for name in fields if name in document}
        for name in secrets_:
            sealed = values.get(name)
            values[name] = (
                self._cipher.open_text(EncryptedTokens.model_validate(sealed)) if sealed else None
            )
        for name in ("bot_scopes", "user_scopes"):
            # Stored as `to_dict()` gives them: comma-joined, None when empty. The constructors
            # split a string but keep None as None, so give them "" for "no scopes".
            if name in values and values[name] is None:
                values[name] = ""
        custom = document.get("custom_values")
        values["custom_values"] = dict(custom) if isinstance(custom, Mapping) else {}
        return values

    # --- deleting -------------------------------------------------------------------------

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        query = self._workspace(enterprise_id, team_id)
        if query is None:
            return
        result = await self._bots.delete_many(query)
        self._logger.debug(
            "Deleted %d Slack bot record(s) (enterprise %s, team %s)",
            result.deleted_count,
            query["enterprise_id"],
            query["team_id"],
        )

    async def async_delete_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
    ) -> None:
        query = self._workspace(enterprise_id, team_id)
        if query is None or not _valid_id(user_id):
            return
        if user_id is not None:
            query["user_id"] = user_id
        result = await self._installations.delete_many(query)
        self._logger.debug(
            "Deleted %d Slack installation record(s) (enterprise %s, team %s, user %s)",
            result.deleted_count,
            query["enterprise_id"],
            query["team_id"],
            user_id,
        )

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)
        await self.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id)


# A state we issue is 43 characters; anything far longer is not one of ours and is not hashed.
MAX_STATE_LENGTH = 256


def state_hash(state: str) -> str:
    """The stored form of a state: its SHA-256, hex."""
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


class MongoOAuthStateStore(AsyncOAuthStateStore):
    """Bolt's OAuth state store over `slack_oauth_states`: single-use, expiring states.

    Args:
        states: the `slack_oauth_states` collection.
        expiration_seconds: how long an issued state may be consumed.
        logger: the logger Bolt is given (`logger` property); this module's by default.
    """

    def __init__(
        self,
        *,
        states: AsyncCollection[Document],
        expiration_seconds: int = 600,
        logger: logging.Logger | None = None,
    ) -> None:
        if isinstance(expiration_seconds, bool) or not isinstance(expiration_seconds, int):
            raise TypeError("expiration_seconds must be an int")
        if expiration_seconds <= 0:
            raise ValueError("expiration_seconds must be positive")
        self._states = states
        self.expiration_seconds = expiration_seconds
        self._logger = logger or log

    def __repr__(self) -> str:
        return f"MongoOAuthStateStore(expiration_seconds={self.expiration_seconds})"

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    async def ensure_indexes(self) -> None:
        await self._states.create_index([("state_hash", ASCENDING)], name="by_state", unique=True)
        # Housekeeping only: the TTL monitor runs about once a minute, so `async_consume` checks
        # the expiry itself.
        await self._states.create_index(
            [("expires_at", ASCENDING)], name="cleanup", expireAfterSeconds=0
        )

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        # Bolt passes nothing today; slack_sdk's interface allows arguments, which are ignored.
        state = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        await self._states.insert_one(
            {
                "_id": ObjectId(),
                "state_hash": state_hash(state),
                "created_at": now,
                "expires_at": now + timedelta(seconds=self.expiration_seconds),
            }
        )
        return state

    async def async_consume(self, state: str) -> bool:
        """True exactly once for a state issued here and not yet expired; False otherwise."""
        if not isinstance(state, str) or not state or len(state) > MAX_STATE_LENGTH:
            self._logger.debug("Refused an OAuth state that cannot be one of ours")
            return False
        try:
            hashed = state_hash(state)
        except UnicodeEncodeError:  # a lone surrogate: not one of ours either
            return False
        # One atomic step: of concurrent callbacks with the same state, one gets the record.
        document = await self._states.find_one_and_delete(
            {"state_hash": hashed, "expires_at": {"$gt": datetime.now(UTC)}},
            projection={"_id": 1},
        )
        if document is None:
            self._logger.debug("An OAuth state was unknown, already used or expired")
            return False
        return True
