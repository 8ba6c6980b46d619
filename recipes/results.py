"""What a recipe run came to, as plain data: whichever surface shows it (Teams cards, see
`cards.recipes.run_result_card`) renders it from these fields alone.

This module imports nothing of storage, sign-in, Teams or cards, so that any of them may read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    SIGN_IN_NEEDED = "sign_in_needed"  # the invoker must connect their own account
    # The app connection is missing, never authorized, or needs authorizing again: `message`
    # names whom to ask (the parent's configured contact).
    PARENT_UNAVAILABLE = "parent_unavailable"
    FAILED = "failed"  # the app refused, failed or did not answer
    DUPLICATE = "duplicate"  # this Teams activity already ran


@dataclass(frozen=True)
class RunResult:
    """One run's outcome and what to tell the person about it.

    Every outcome but SUCCEEDED and DUPLICATE carries `message`, the sentence saying why. A
    SUCCEEDED run carries what it did (`verb` in `app_name`), the account label it acted as
    (`acted_as`), and what the app answered: labelled `fields`, a `link` and a `summary`.
    """

    outcome: Outcome
    recipe_name: str = ""
    message: str | None = None
    verb: str = ""
    app_name: str = ""
    acted_as: str = ""
    # label -> value, in the order they are shown
    fields: Mapping[str, str] = field(default_factory=dict)
    link: str | None = None
    summary: str | None = None
    # Set with SIGN_IN_NEEDED: the parent connection (a `storage.models.Connection`, not typed
    # here so that this module knows nothing of storage) whose Login card the invoker should get.
    sign_in_parent: Any = None
    run_id: str | None = None
