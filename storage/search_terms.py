"""The words a connection is found by in the admin console's person search.

Each connection keeps `search_terms`: the lowercase words of its owner's name, the owner's object
id, and the account at the provider (whole, and split at `@ . _ - +`). A search looks up the
terms that begin with the first word typed, through the index (kind, tenant, search_terms): an
equality prefix and a range on the next field, the one shape the embedded store reads
without a scan. So "jan", "doe", "jane.doe@contoso.com" and an object id all find Jane Doe,
while the rest of what was typed is then checked as a substring.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SEARCH_TERMS = "search_terms"
_SEPARATORS = re.compile(r"[\s@._+\-,;:/()\[\]<>\"']+")
# A prefix that matches more connections than this is not narrow enough to read in one go.
MOST_TERM_MATCHES = 2_000


def _words(text: str) -> set[str]:
    lowered = text.casefold().strip()
    if not lowered:
        return set()
    return {lowered} | {word for word in _SEPARATORS.split(lowered) if word}


def terms_of(owner: Mapping[str, Any], account: Mapping[str, Any] | None) -> list[str]:
    """The terms of a connection document's owner and account."""
    terms: set[str] = set()
    for text in (owner.get("name"), owner.get("aad_object_id")):
        if isinstance(text, str):
            terms |= _words(text)
    for text in ((account or {}).get("display_name"), (account or {}).get("id")):
        if isinstance(text, str):
            terms |= _words(text)
    return sorted(term for term in terms if len(term) <= 200)


def lookup_word(text: str) -> str | None:
    """The word of a search to look up by prefix: the first one typed (None: nothing to look
    up, e.g. only separators)."""
    words = [word for word in _SEPARATORS.split(text.casefold().strip()) if word]
    return words[0] if words else None


def prefix_range(word: str) -> dict[str, str]:
    """Every term that begins with `word`."""
    return {"$gte": word, "$lt": word + "\U0010ffff"}
