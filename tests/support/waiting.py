"""Waiting for a condition the system reaches on its own (background work after an answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


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
