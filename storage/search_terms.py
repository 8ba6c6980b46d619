"""The words a connection is found by in the admin console's person search.

Each connection keeps `search_terms`: its owner's name, the owner's object id and the account at
the provider, lowercased, each whole and from every word on (after a space or `@ . _ - +`):
"jane doe" and "doe". A search looks up the terms that begin with what was typed, through the
index (kind, tenant, search_terms): an equality prefix and a range on the next field, the one
shape the embedded store reads without a scan. So "jan", "doe", "jane d", "jane.doe@contoso"
and an object id all find Jane Doe: the text typed, found at the beginning of any word.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SEARCH_TERMS = "search_terms"
_SEPARATORS = re.compile(r"[\s@._+\-,;:/()\[\]<>\"']+")
# A prefix that matches more connections than this is not narrow enough to read in one go.
MOST_TERM_MATCHES = 2_000


def normalized(text: str) -> str:
    """Lowercase, trimmed, runs of spaces made one: how terms are kept and searches read."""
    return " ".join(text.casefold().split())


def _suffixes(text: str) -> set[str]:
    """The text and what follows each separator in it: "jane doe" gives "jane doe" and "doe"."""
    lowered = normalized(text)
    if not lowered:
        return set()
    found = {lowered}
    for separator in _SEPARATORS.finditer(lowered):
        rest = lowered[separator.end() :]
        if rest:
            found.add(rest)
    return found


def terms_of(owner: Mapping[str, Any], account: Mapping[str, Any] | None) -> list[str]:
    """The terms of a connection document's owner and account."""
    terms: set[str] = set()
    for text in (
        owner.get("name"),
        owner.get("aad_object_id"),
        (account or {}).get("display_name"),
        (account or {}).get("id"),
    ):
        if isinstance(text, str):
            terms |= _suffixes(text)
    return sorted(term for term in terms if len(term) <= 200)


def lookup_text(text: str) -> str | None:
    """What a search looks up by prefix (None: nothing to look up)."""
    return normalized(text) or None


def prefix_range(word: str) -> dict[str, str]:
    """Every term that begins with `word`."""
    return {"$gte": word, "$lt": word + "\U0010ffff"}
