"""Waiting for a condition the system reaches on its own (background work after an answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from storage.outbox import HAS_EVENTS

if TYPE_CHECKING:
    from storage.database import Database


async def eventually(check: Callable[[], Any], *, within_s: float = 10.0) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail after the deadline."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)  # polling a condition, not waiting for a result


async def audited(database: Database) -> None:
    """Wait (bounded) until no connection record has audit events left in its outbox, i.e.
    every change's events have reached the audit log.

    A person's own Disconnect or Confirm-delete answers before its audit event is in
    `audit_events`: the event is stored with the change, in the same update, on the record's
    outbox, and the background settle task (connections/settle.py) moves it to the log right
    after the answer. An event leaves the outbox only once it is in the log, so an empty
    outbox means the log is complete; a test that reads the log after an answer waits here
    first (and then asserts exactly what it expects, so a duplicate still fails it)."""
    connections = database.db["connections"]

    async def nothing_pending() -> bool:
        return await connections.find_one(HAS_EVENTS, projection={"_id": 1}) is None

    await eventually(nothing_pending)
