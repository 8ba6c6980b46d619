"""A stalled store (SIGSTOP) costs a turn at most a few seconds: the person is told to try
again in a moment within 5 s, and the same bot works again as soon as the store resumes."""

from __future__ import annotations

import json
import os
import signal
import time

import messages
from cards import verbs
from storage.embedded import EmbeddedMongo
from tests.conftest import RunningBot, StartBot
from tests.support import activities
from tests.support.activities import JANE
from tests.support.data import runtime


async def test_stalled_store_answers_within_five_seconds(
    start_bot: StartBot, own_store: EmbeddedMongo
) -> None:
    """With the store stopped, `personal_connections` and a card action each answer "try again
    in a moment" within 5 s; after SIGCONT the same bot lists the connection again."""
    bot: RunningBot = await start_bot(mongodb_uri=own_store.uri)
    connection = await runtime(bot.database, JANE, "box", "jane@box.example")
    assert own_store.pid is not None
    os.kill(own_store.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, _ = await bot.post(
            activities.message(JANE, bot.service_url, "personal_connections")
        )
        assert time.monotonic() - started < 5
        assert status == 200
        assert [s.text for s in bot.connector.sent] == [messages.TURN_FAILED]

        started = time.monotonic()
        status, body = await bot.post(
            activities.card_action(
                JANE, bot.service_url, verbs.DISCONNECT, {verbs.CONNECTION_INPUT: connection.id}
            )
        )
        assert time.monotonic() - started < 5
        assert status == 200 and body["value"] == messages.TURN_FAILED
    finally:
        os.kill(own_store.pid, signal.SIGCONT)
    bot.connector.clear()
    status, _ = await bot.post(activities.message(JANE, bot.service_url, "personal_connections"))
    assert status == 200
    [reply] = bot.connector.sent
    assert "Box — jane@box.example (Connected)" in json.dumps(reply.card, ensure_ascii=False)
