"""Tokens are encrypted at rest with a rotatable key list, and keys are loaded safely."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from storage.crypto import TokenCipher, TokenDecryptionError, key_id_of, reencrypt
from storage.database import Database
from storage.models import EncryptedTokens, Owner
from storage.token_keys import (
    KEY_FILE_NAME,
    TokenKeyFileInsecure,
    TokenKeyMissing,
    load_token_cipher,
    new_key,
)

ACCESS_TOKEN = "access-5f1c0a7e-SECRET-access-token"
REFRESH_TOKEN = "refresh-9b2d44c1-SECRET-refresh-token"
TOKENS: dict[str, Any] = {
    "access_token": ACCESS_TOKEN,
    "refresh_token": REFRESH_TOKEN,
    "expires_at": "2030-01-01T00:00:00+00:00",
}
OWNER = Owner(tenant_id="tenant-1", aad_object_id="person-1", name="Ada")


def test_round_trip() -> None:
    """What `seal` seals, `open` gives back unchanged; likewise for single secrets."""
    cipher = TokenCipher([new_key()])
    sealed = cipher.seal(TOKENS)
    assert sealed.key_id == cipher.key_id
    assert cipher.open(sealed) == TOKENS
    assert cipher.open_text(cipher.seal_text("pkce-verifier-é")) == "pkce-verifier-é"


def test_key_id_is_a_short_hash_of_the_key() -> None:
    """A key id is 16 hex characters, stable for a key, and different for another key."""
    key = new_key()
    assert TokenCipher([key]).key_id == key_id_of(key)
    assert len(key_id_of(key)) == 16 and int(key_id_of(key), 16) >= 0
    assert key_id_of(key) != key_id_of(new_key())


async def test_stored_ciphertext_holds_no_plaintext(database: Database) -> None:
    """The record in the database holds neither token in any form a reader could find."""
    cipher = TokenCipher([new_key()])
    connection = await database.connections.create_parent(
        provider="box", owner=OWNER, account=None, tokens=cipher.seal(TOKENS)
    )
    raw = await database.db["connections"].find_one({"_id": ObjectId(connection.id)})
    assert raw is not None
    ciphertext = raw["tokens"]["ciphertext"]
    assert isinstance(ciphertext, bytes)
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, "SECRET"):
        assert secret not in repr(raw)
        assert secret.encode() not in ciphertext
    assert cipher.open(EncryptedTokens.model_validate(raw["tokens"])) == TOKENS


def test_old_records_still_open_after_a_new_key_is_put_first() -> None:
    """A new key first seals; records sealed with the old key still open and need rotation."""
    old_key, new = new_key(), new_key()
    old_sealed = TokenCipher([old_key]).seal(TOKENS)
    cipher = TokenCipher([new, old_key])
    assert cipher.open(old_sealed) == TOKENS
    assert cipher.needs_rotation(old_sealed)
    rotated = cipher.rotate(old_sealed)
    assert rotated.key_id == key_id_of(new) == cipher.key_id
    assert not cipher.needs_rotation(rotated)
    assert cipher.rotate(rotated) is rotated
    assert TokenCipher([new]).open(rotated) == TOKENS


async def test_reencrypt_moves_only_old_key_documents(database: Database) -> None:
    """`reencrypt` rewrites old-key values only, counts them, and leaves everything else alone."""
    collection = database.db["sealed_things"]
    old_key, new = new_key(), new_key()
    old_cipher, cipher = TokenCipher([old_key]), TokenCipher([new, old_key])
    old_ids = [ObjectId() for _ in range(3)]
    current_id, mixed_id, empty_id = ObjectId(), ObjectId(), ObjectId()
    current_tokens = cipher.seal(TOKENS).model_dump()
    await collection.insert_many(
        [
            *(
                {"_id": i, "tokens": old_cipher.seal(TOKENS).model_dump(), "version": 1}
                for i in old_ids
            ),
            {"_id": current_id, "tokens": current_tokens, "version": 1},
            {
                "_id": mixed_id,
                "tokens": current_tokens,
                "pending": {"verifier": old_cipher.seal_text("verifier").model_dump()},
                "version": 1,
            },
            {"_id": empty_id, "tokens": None, "version": 1},
        ]
    )

    changed = await reencrypt(collection, cipher, fields=["tokens", "pending.verifier"])

    assert changed == len(old_ids) + 1
    assert await reencrypt(collection, cipher, fields=["tokens", "pending.verifier"]) == 0
    documents = {d["_id"]: d async for d in collection.find()}
    assert documents[current_id]["tokens"] == current_tokens
    assert documents[mixed_id]["tokens"] == current_tokens
    assert documents[empty_id]["tokens"] is None
    assert all(d["version"] == 1 for d in documents.values())
    for cipher_now in (cipher, TokenCipher([new])):
        for i in [*old_ids, current_id, mixed_id]:
            sealed = EncryptedTokens.model_validate(documents[i]["tokens"])
            assert sealed.key_id == cipher.key_id
            assert cipher_now.open(sealed) == TOKENS
        verifier = EncryptedTokens.model_validate(documents[mixed_id]["pending"]["verifier"])
        assert cipher_now.open_text(verifier) == "verifier"


class _WriterRacingCollection:
    """A collection whose `find` lets a concurrent writer replace a document's tokens first."""

    def __init__(self, collection: Any, racing_tokens: dict[str, Any]) -> None:
        self._collection = collection
        self._racing_tokens = racing_tokens

    def find(self, *args: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        async def documents() -> AsyncIterator[dict[str, Any]]:
            async for document in self._collection.find(*args, **kwargs):
                await self._collection.update_one(
                    {"_id": document["_id"]}, {"$set": {"tokens": self._racing_tokens}}
                )
                yield document

        return documents()

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self._collection.update_one(*args, **kwargs)


async def test_reencrypt_never_clobbers_a_concurrent_write(database: Database) -> None:
    """A value written between `reencrypt`'s read and its update wins and is not counted."""
    collection = database.db["sealed_things"]
    old_key, new = new_key(), new_key()
    cipher = TokenCipher([new, old_key])
    await collection.insert_one({"tokens": TokenCipher([old_key]).seal(TOKENS).model_dump()})
    fresh = cipher.seal({"access_token": "fresh"}).model_dump()

    changed = await reencrypt(
        _WriterRacingCollection(collection, fresh),  # type: ignore[arg-type]
        cipher,
        fields=["tokens"],
    )

    assert changed == 0
    stored = await collection.find_one({})
    assert stored is not None and stored["tokens"] == fresh


async def test_reencrypt_skips_values_no_key_opens(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """An unopenable value is left as it is and logged by id; the others are still rewritten."""
    collection = database.db["sealed_things"]
    old_key, new = new_key(), new_key()
    lost = TokenCipher([new_key()]).seal(TOKENS).model_dump()
    lost_id = (await collection.insert_one({"tokens": lost})).inserted_id
    await collection.insert_one({"tokens": TokenCipher([old_key]).seal(TOKENS).model_dump()})

    with caplog.at_level(logging.WARNING):
        changed = await reencrypt(collection, TokenCipher([new, old_key]), fields=["tokens"])

    assert changed == 1
    assert (await collection.find_one({"_id": lost_id}))["tokens"] == lost  # type: ignore[index]
    assert str(lost_id) in caplog.text
    assert lost["ciphertext"].decode() not in caplog.text


def test_unknown_key_raises_without_leaking() -> None:
    """A value no key opens raises TokenDecryptionError naming neither plaintext nor ciphertext."""
    key = new_key()
    sealed = TokenCipher([new_key()]).seal(TOKENS)
    cipher = TokenCipher([key])
    for attempt in (cipher.open, cipher.open_text, cipher.rotate):
        with pytest.raises(TokenDecryptionError) as caught:
            attempt(sealed)
        message = str(caught.value)
        assert sealed.key_id in message
        for secret in (ACCESS_TOKEN, "SECRET", sealed.ciphertext.decode(), key):
            assert secret not in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(TokenDecryptionError):
        cipher.open(EncryptedTokens(key_id=cipher.key_id, ciphertext=b"not a fernet token"))


def test_text_and_records_are_not_confused() -> None:
    """A single secret does not open as a token record."""
    cipher = TokenCipher([new_key()])
    with pytest.raises(TokenDecryptionError) as caught:
        cipher.open(cipher.seal_text("verifier-SECRET"))
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    "bad_key",
    ["", "not-a-key", "c2hvcnQ=", "x" * 44, "ÿ" * 44],
    ids=["blank", "garbage", "too-short", "bad-base64", "non-ascii"],
)
def test_invalid_key_names_its_position_not_the_key(bad_key: str) -> None:
    """An invalid key is reported by its position in TOKEN_ENCRYPTION_KEYS, never echoed."""
    with pytest.raises(ValueError) as caught:
        TokenCipher([new_key(), bad_key])
    message = str(caught.value)
    assert "key 2 of TOKEN_ENCRYPTION_KEYS is not a valid Fernet key" in message
    if bad_key:
        assert bad_key not in message
    assert caught.value.__suppress_context__


def test_no_keys_is_refused() -> None:
    """A cipher needs at least one key, given as a list rather than one string."""
    with pytest.raises(ValueError, match="no keys"):
        TokenCipher([])
    with pytest.raises(TypeError):
        TokenCipher(new_key())


def test_repr_hides_keys() -> None:
    """The repr (and str) of a cipher shows key ids only."""
    keys = [new_key(), new_key()]
    cipher = TokenCipher(keys)
    for text in (repr(cipher), str(cipher)):
        assert cipher.key_id in text
        for key in keys:
            assert key not in text


def test_configured_keys_are_used_in_order(tmp_path: Path) -> None:
    """Configured keys win over the key file, the first sealing; no key file is written."""
    first, second = new_key(), new_key()
    cipher = load_token_cipher(
        configured_keys=[f" {first} ", second], data_dir=tmp_path, production=True
    )
    assert cipher.key_ids == (key_id_of(first), key_id_of(second))
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_local_key_file_is_created_private_once_and_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without keys outside production a 0o600 key file is made once, reused, and announced."""
    data_dir = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="storage.token_keys"):
        first = load_token_cipher(configured_keys=[], data_dir=data_dir, production=False)
        second = load_token_cipher(configured_keys=[" "], data_dir=data_dir, production=False)
    path = data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in data_dir.iterdir()] == [KEY_FILE_NAME]
    key = path.read_text().strip()
    assert first.key_ids == second.key_ids == (key_id_of(key),)
    assert first.open(second.seal(TOKENS)) == TOKENS
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path.resolve()) in warnings[0].getMessage()
    assert "TOKEN_ENCRYPTION_KEYS" in warnings[0].getMessage()
    assert key not in caplog.text


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_key_file_accessible_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    """An existing key file that group or others can get at is refused, saying to chmod 600."""
    path = tmp_path / KEY_FILE_NAME
    key = new_key()
    path.write_text(key + "\n")
    os.chmod(path, mode)
    with pytest.raises(TokenKeyFileInsecure) as caught:
        load_token_cipher(configured_keys=[], data_dir=tmp_path, production=False)
    assert "chmod 600" in str(caught.value)
    assert key not in str(caught.value)


def test_invalid_key_file_names_the_file_not_the_key(tmp_path: Path) -> None:
    """A key file with a bad key is reported by file and position, without its content."""
    path = tmp_path / KEY_FILE_NAME
    path.write_text("not-a-valid-key\n")
    os.chmod(path, 0o600)
    with pytest.raises(ValueError) as caught:
        load_token_cipher(configured_keys=[], data_dir=tmp_path, production=False)
    assert f"key 1 of {path} is not a valid Fernet key" in str(caught.value)
    assert "not-a-valid-key" not in str(caught.value)


def test_production_without_keys_is_refused(tmp_path: Path) -> None:
    """In production, no configured key raises TokenKeyMissing naming TOKEN_ENCRYPTION_KEYS."""
    with pytest.raises(TokenKeyMissing, match="TOKEN_ENCRYPTION_KEYS"):
        load_token_cipher(configured_keys=["", "  "], data_dir=tmp_path, production=True)
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_new_key_is_a_fresh_valid_key() -> None:
    """`new_key` gives a different valid Fernet key each time."""
    first, second = new_key(), new_key()
    assert first != second
    assert TokenCipher([first, second]).key_ids == (key_id_of(first), key_id_of(second))
