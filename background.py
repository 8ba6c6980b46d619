"""Stopping background tasks for certain, even when a library swallows a cancellation.

On Python 3.11, `asyncio.wait_for` loses a cancellation that arrives as its inner operation
finishes (fixed in 3.12), and PyMongo's client-side time limits (`timeoutMS`) put such a
`wait_for` under every database call. A loop whose cancellation was lost that way goes on
sleeping, and whoever gathered it waits forever. `stop` cancels again until the task is done.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

RECANCEL_EVERY_S = 0.5


async def stop(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel `tasks` and wait until each has ended, cancelling again while one runs on."""
    pending = {task for task in tasks if task is not None and not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_EVERY_S)
    for task in tasks:
        if task is not None and task.done() and not task.cancelled():
            with contextlib.suppress(Exception):
                task.exception()  # retrieved: no "exception was never retrieved" warning
