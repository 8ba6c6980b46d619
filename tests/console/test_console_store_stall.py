"""A stalled store (SIGSTOP) gives a console page a friendly 503 within 5 s, and the console
works again as soon as the store resumes."""

from __future__ import annotations

import os
import signal
import time

from storage.embedded import EmbeddedMongo
from storage.privileges import OWNER_PRIVILEGES
from tests.conftest import StartBot
from tests.console.support import sign_in, stored_parent, stored_runtime


async def test_a_stalled_store_gives_a_friendly_page_in_time(
    start_bot: StartBot, own_store: EmbeddedMongo
) -> None:
    bot = await start_bot(mongodb_uri=own_store.uri)
    admin = await sign_in(bot.client, bot.database, privileges=OWNER_PRIVILEGES)
    parent = await stored_parent(bot.database)
    jane = await stored_runtime(bot.database, parent, "jane", name="Jane Doe")
    assert own_store.pid is not None
    os.kill(own_store.pid, signal.SIGSTOP)
    try:
        for path in ("/admin/", "/admin/connections", "/admin/audit"):
            started = time.monotonic()
            status, page, _ = await admin.get(path)
            assert time.monotonic() - started < 5, path
            assert status == 503 and "didn&#39;t answer" in page, (path, status)
        started = time.monotonic()
        status, page, _ = await admin.post(
            "/admin/connections/apply", [("action", "delete"), ("id", jane.id)]
        )
        assert time.monotonic() - started < 8
        assert status == 503 and "Traceback" not in page
    finally:
        os.kill(own_store.pid, signal.SIGCONT)
    status, page, _ = await admin.get("/admin/connections")
    assert status == 200 and "Jane Doe" in page
