"""Encryption at rest for OAuth tokens, with a key list so keys can rotate.

`TokenCipher` seals with the first key and opens with any key (`cryptography`'s MultiFernet).
Each sealed value records the id of the key that sealed it (`EncryptedTokens.key_id`), so
records sealed with an older key can be found and re-sealed with `reencrypt`. A key id is the
first 16 hex characters of the SHA-256 of the key's 32 raw bytes: it tells keys apart without
revealing them. Neither keys, plaintext nor ciphertext ever appear in messages or reprs.

Rotating a key:
    1. put the new key first in TOKEN_ENCRYPTION_KEYS, keep the old ones after it, and restart
       every process (from then on all of them seal with the new key);
    2. run `reencrypt` over the token fields;
    3. drop the old key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import ValidationError
from pymongo.asynchronous.collection import AsyncCollection

from storage.models import EncryptedTokens

log = logging.getLogger(__name__)

Document = dict[str, Any]

KEYS_SETTING = "TOKEN_ENCRYPTION_KEYS"


class TokenDecryptionError(Exception):
    """No configured key can open a sealed value, or what it holds is not what was expected."""


def key_id_of(key: str) -> str:
    """The non-secret id of a Fernet key string (raises ValueError when it is not one)."""
    raw = base64.urlsafe_b64decode(key.encode("ascii"))
    if len(raw) != 32:
        raise ValueError("a Fernet key decodes to 32 bytes")
    return hashlib.sha256(raw).hexdigest()[:16]


class TokenCipher:
    """Seals with the first key, opens with any of them.

    Args:
        keys: Fernet keys (urlsafe base64 of 32 bytes), the current one first.
        source: where the keys came from, named in errors (never the keys themselves).

    Raises:
        ValueError: no keys, or one is not a valid Fernet key (its position is named).
    """

    __slots__ = ("_current", "_key_ids", "_multi")

    def __init__(self, keys: Sequence[str], *, source: str = KEYS_SETTING) -> None:
        if isinstance(keys, str | bytes):
            # A lone string would be iterated character by character.
            raise TypeError("keys must be a sequence of key strings, not one string")
        if not keys:
            raise ValueError(f"{source} holds no keys")
        fernets: list[Fernet] = []
        key_ids: list[str] = []
        for position, key in enumerate(keys, start=1):
            try:
                text = key.strip()
                key_ids.append(key_id_of(text))
                fernets.append(Fernet(text))
            except (ValueError, TypeError, AttributeError, UnicodeError):
                # `from None`: the underlying error must not carry the key into a traceback.
                raise ValueError(
                    f"key {position} of {source} is not a valid Fernet key "
                    "(urlsafe base64 of 32 bytes)"
                ) from None
        self._multi = MultiFernet(fernets)
        self._current = fernets[0]
        self._key_ids = tuple(key_ids)

    def __repr__(self) -> str:
        return f"TokenCipher(key_ids={list(self._key_ids)!r})"

    @property
    def key_id(self) -> str:
        """The id of the key that seals."""
        return self._key_ids[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of every key that opens, the sealing key first."""
        return self._key_ids

    def seal(self, data: dict[str, Any]) -> EncryptedTokens:
        """Encrypt a token record (JSON-serialisable dict) with the current key."""
        if not isinstance(data, dict):
            raise TypeError("seal() takes a dict; use seal_text() for a single secret")
        plaintext = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        sealed = self._seal_bytes(plaintext.encode("utf-8"))
        expires_at = _expiry(data.get("expires_at"))
        return sealed.model_copy(update={"expires_at": expires_at}) if expires_at else sealed

    def open(self, sealed: EncryptedTokens) -> dict[str, Any]:
        """Decrypt a token record sealed by `seal`.

        Raises:
            TokenDecryptionError: no key opens it, or it does not hold a token record.
        """
        plaintext = self._open_bytes(sealed)
        try:
            data = json.loads(plaintext.decode("utf-8"))
        except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
            data = None
        if not isinstance(data, dict):
            raise TokenDecryptionError("the sealed value does not hold a token record")
        return data

    def seal_text(self, text: str) -> EncryptedTokens:
        """Encrypt a single secret (a PKCE verifier, say) with the current key."""
        if not isinstance(text, str):
            raise TypeError("seal_text() takes a str")
        return self._seal_bytes(text.encode("utf-8"))

    def open_text(self, sealed: EncryptedTokens) -> str:
        """Decrypt a secret sealed by `seal_text`.

        Raises:
            TokenDecryptionError: no key opens it, or it does not hold text.
        """
        plaintext = self._open_bytes(sealed)
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise TokenDecryptionError("the sealed value does not hold text") from None

    def needs_rotation(self, sealed: EncryptedTokens) -> bool:
        """True when the value was sealed with a key other than the current one."""
        return sealed.key_id != self.key_id

    def rotate(self, sealed: EncryptedTokens) -> EncryptedTokens:
        """The same plaintext sealed with the current key (the value itself when it already is).

        Raises:
            TokenDecryptionError: no key opens it.
        """
        if not self.needs_rotation(sealed):
            return sealed
        try:
            ciphertext = self._multi.rotate(sealed.ciphertext)
        except InvalidToken:
            raise self._undecryptable(sealed) from None
        return EncryptedTokens(
            key_id=self.key_id, ciphertext=ciphertext, expires_at=sealed.expires_at
        )

    def _seal_bytes(self, plaintext: bytes) -> EncryptedTokens:
        return EncryptedTokens(key_id=self.key_id, ciphertext=self._current.encrypt(plaintext))

    def _open_bytes(self, sealed: EncryptedTokens) -> bytes:
        try:
            return self._multi.decrypt(sealed.ciphertext)
        except InvalidToken:
            raise self._undecryptable(sealed) from None

    def _undecryptable(self, sealed: EncryptedTokens) -> TokenDecryptionError:
        # Key ids are safe to show and tell an operator which key is missing.
        return TokenDecryptionError(
            f"no configured token encryption key can open this value (sealed with key id "
            f"{sealed.key_id[:64]!r}; configured key ids: {', '.join(self._key_ids)})"
        )


def _expiry(value: Any) -> datetime | None:
    """A token record's `expires_at` (ISO text) as a time, when it is one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _get_path(document: Mapping[str, Any], dotted: str) -> Any:
    value: Any = document
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


async def reencrypt(
    collection: AsyncCollection[Document], cipher: TokenCipher, *, fields: Sequence[str]
) -> int:
    """Re-seal with the current key every value in `fields` that an older key sealed.

    Each document is rewritten by one conditional update that requires every value it replaces
    to be unchanged, so a concurrent writer wins and the document is simply skipped. Run it once
    every process seals with the current key (otherwise a process still on the old key list may
    write old-key values again; running it again picks those up). Documents holding a value no
    key can open are logged by id and skipped. Nothing but the sealed values is touched.

    Args:
        collection: the collection holding the sealed values.
        cipher: the current key list.
        fields: dotted paths of `{"key_id": ..., "ciphertext": ...}` sub-documents.

    Returns:
        How many documents were rewritten.
    """
    paths = list(dict.fromkeys(fields))
    if not paths:
        return 0
    current = cipher.key_id
    stale = [{f"{path}.key_id": {"$ne": current, "$exists": True}} for path in paths]
    query: Document = stale[0] if len(stale) == 1 else {"$or": stale}
    changed = 0
    async for document in collection.find(query, projection=paths):
        guard: Document = {"_id": document["_id"]}
        updates: Document = {}
        for path in paths:
            value = _get_path(document, path)
            if not isinstance(value, Mapping) or value.get("key_id") in (None, current):
                continue
            try:
                sealed = EncryptedTokens.model_validate(value)
                rotated = cipher.rotate(sealed)
            except (ValidationError, TokenDecryptionError) as error:
                log.warning(
                    "Cannot re-encrypt %s of document %s (%s); left as it is",
                    path,
                    document["_id"],
                    type(error).__name__,
                )
                continue
            guard[f"{path}.key_id"] = value["key_id"]
            guard[f"{path}.ciphertext"] = value["ciphertext"]
            updates[path] = rotated.model_dump()
        if not updates:
            continue
        result = await collection.update_one(guard, {"$set": updates})
        changed += result.modified_count
    return changed
