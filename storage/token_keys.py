"""Where the token encryption keys come from: TOKEN_ENCRYPTION_KEYS, or a local key file.

In production (an app id is configured) the keys must be configured: a key generated on one
machine's disk would be lost with it, taking every stored token along. For local use, a key is
generated once into `<data_dir>/token-encryption.key`, readable by its owner only.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet

import messages
from settings import Settings
from storage.crypto import KEYS_SETTING, TokenCipher

log = logging.getLogger(__name__)

KEY_FILE_NAME = "token-encryption.key"

# Key files already announced in this process: the warning is said once, not at every load.
_warned: set[Path] = set()


class TokenKeyError(RuntimeError):
    """The token encryption keys cannot be loaded safely."""


class TokenKeyMissing(TokenKeyError):
    """Production without TOKEN_ENCRYPTION_KEYS."""


class TokenKeyFileInsecure(TokenKeyError):
    """The local key file can be read or written by someone other than its owner."""


def new_key() -> str:
    """A fresh Fernet key string, suitable for TOKEN_ENCRYPTION_KEYS."""
    return Fernet.generate_key().decode("ascii")


def load_token_cipher(
    *, configured_keys: Sequence[str], data_dir: Path, production: bool
) -> TokenCipher:
    """The cipher for stored tokens.

    Args:
        configured_keys: TOKEN_ENCRYPTION_KEYS, current key first; blank entries alone count
            as none configured.
        data_dir: where the local key file lives when no keys are configured.
        production: an app id is configured.

    Raises:
        TokenKeyMissing: production and no keys configured.
        TokenKeyFileInsecure: the local key file is accessible by group or others.
        ValueError: a key is not a valid Fernet key (its position is named, not the key).
    """
    if any(key.strip() for key in configured_keys):
        return TokenCipher(configured_keys, source=KEYS_SETTING)
    if production:
        raise TokenKeyMissing(messages.ENCRYPTION_KEYS_MISSING.format(setting=KEYS_SETTING))
    path = Path(data_dir) / KEY_FILE_NAME
    created = _create_key_file(path)
    keys = _read_key_file(path)
    resolved = path.resolve()
    if resolved not in _warned:
        _warned.add(resolved)
        log.warning(
            messages.LOG_ENCRYPTION_KEY_GENERATED if created else messages.LOG_ENCRYPTION_KEY_LOCAL,
            resolved,
            KEYS_SETTING,
        )
    return TokenCipher(keys, source=str(path))


def _create_key_file(path: Path) -> bool:
    """Write a new key to `path` unless it exists; True when this call created it.

    The key goes to a private temporary file that is then hard-linked into place, so `path`
    never exists half-written (a concurrent starter reads either nothing or the whole key) and
    is never readable by anyone but its owner, not even briefly.
    """
    if path.exists():
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        try:
            os.write(descriptor, (new_key() + "\n").encode("ascii"))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False  # another process got there first; use its key
        return True
    finally:
        temporary.unlink(missing_ok=True)


def _read_key_file(path: Path) -> list[str]:
    """The keys in the file, one a line, after checking only its owner can get at it."""
    with path.open("rb") as file:
        # fstat the open file, not the path, so the file checked is the file read.
        mode = os.fstat(file.fileno()).st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TokenKeyFileInsecure(
                messages.ENCRYPTION_KEY_FILE_INSECURE.format(
                    path=path, mode=f"{stat.S_IMODE(mode):03o}"
                )
            )
        content = file.read()
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError:
        # Not the decoder's message: it would quote a byte of the file.
        raise ValueError(messages.ENCRYPTION_KEY_FILE_NOT_KEYS.format(path=path)) from None
    keys = [line.strip() for line in text.splitlines() if line.strip()]
    if not keys:
        raise ValueError(messages.ENCRYPTION_KEY_FILE_EMPTY.format(path=path))
    return keys


def cipher_for(settings: Settings) -> TokenCipher:
    """The token cipher for these settings: configured keys, else the local key file (never
    in production, where a missing key stops the start)."""
    return load_token_cipher(
        configured_keys=settings.encryption_keys,
        data_dir=settings.data_dir,
        production=settings.auth_enabled,
    )
