"""The Bot Framework connector's REST API, spoken directly on one shared keep-alive session.

`POST {serviceUrl}/v3/conversations/{id}/activities[/{replyToId}]` posts an activity and
`POST {serviceUrl}/v3/conversations` opens a 1:1 chat, with the bot's own token (bots/bot_token.py)
when authentication is on. The JSON is built by the caller from the project's own data; nothing
is converted through a general-purpose model.

Throttling (429, waiting as `Retry-After` says, within a bound), 5xx answers, timeouts and
dropped connections are retried a bounded number of times; other answers are final. Logs name
the host and the status, never a body.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

import messages
from bots.bot_token import BotTokens, BotTokenUnavailable

log = logging.getLogger(__name__)

Json = dict[str, Any]

ATTEMPTS = 3
ATTEMPT_TIMEOUT_S = 3.0
# A connector asking for a longer pause than this is not waited for: the turn has seconds.
MAX_RETRY_WAIT_S = 2.0
BACKOFF_S = 0.2
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


class ConnectorError(Exception):
    """The connector refused the activity (`status`) or did not answer (`status` None)."""

    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(f"{status or 'no answer'}: {reason}")
        self.status = status


def _retry_after_s(header: str | None, attempt: int) -> float:
    """How long to wait before the next attempt: `Retry-After` (seconds or a date), else a
    jittered exponential backoff."""
    backoff = BACKOFF_S * (2**attempt) * (0.5 + random.random())  # noqa: S311 - jitter
    if not header:
        return min(backoff, MAX_RETRY_WAIT_S)
    try:
        wait = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return min(backoff, MAX_RETRY_WAIT_S)
        wait = when.timestamp() - time.time()
    return min(max(wait, 0.0), MAX_RETRY_WAIT_S)


def _host(url: str) -> str:
    try:
        return urlsplit(url).netloc or "?"
    except ValueError:
        return "?"


class Connector:
    """Posts activities to Bot Framework connectors (any serviceUrl the channel gave us).

    Args:
        session: the process's shared aiohttp session (keep-alive connections are reused).
        tokens: the bot's token source; None when authentication is off (local use).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        tokens: BotTokens | None,
        *,
        attempts: int = ATTEMPTS,
        attempt_timeout_s: float = ATTEMPT_TIMEOUT_S,
    ) -> None:
        self._session = session
        self._tokens = tokens
        self._attempts = attempts
        self._timeout = aiohttp.ClientTimeout(total=attempt_timeout_s)
        # Counted for the benchmark and the tests.
        self.posts = 0
        self.retries = 0

    async def send(
        self, service_url: str, conversation_id: str, activity: Json, reply_to_id: str = ""
    ) -> None:
        """Post an activity into a conversation (as a reply to `reply_to_id` when given)."""
        url = f"{service_url.rstrip('/')}/v3/conversations/{quote(conversation_id, safe='')}"
        url += "/activities"
        if reply_to_id:
            url += f"/{quote(reply_to_id, safe='')}"
        # The answer (the posted activity's id) is not used: read, not parsed.
        await self._post(url, activity, answer=False)

    async def create_conversation(self, service_url: str, parameters: Json) -> Json:
        """Open (or find) a conversation; the answer holds its `id`."""
        return await self._post(f"{service_url.rstrip('/')}/v3/conversations", parameters)

    async def _headers(self) -> dict[str, str]:
        if self._tokens is None:
            return _JSON_HEADERS
        try:
            token = await self._tokens.token()
        except BotTokenUnavailable as error:
            raise ConnectorError(None, f"no bot token ({error})") from None
        return {**_JSON_HEADERS, "Authorization": f"Bearer {token}"}

    async def _post(self, url: str, body: Json, *, answer: bool = True) -> Json:
        # ASCII with escapes: the same JSON, encoded faster than UTF-8 text by `json`.
        data = json.dumps(body).encode()
        self.posts += 1
        for attempt in range(self._attempts):
            last = attempt == self._attempts - 1
            headers = await self._headers()
            try:
                async with self._session.post(
                    url, data=data, headers=headers, timeout=self._timeout
                ) as response:
                    status = response.status
                    if status < 300:
                        if answer:
                            return await _json_of(response)
                        await response.read()  # so the connection goes back to the pool
                        return {}
                    if status != 429 and status < 500:
                        log.info(messages.LOG_CONNECTOR_FAILED, _host(url), status)
                        raise ConnectorError(status, response.reason or "")
                    wait = _retry_after_s(response.headers.get("Retry-After"), attempt)
                    outcome: str | int = status
                    reason = response.reason or str(status)
            except (aiohttp.ClientError, TimeoutError) as error:
                outcome = reason = type(error).__name__
                wait = _retry_after_s(None, attempt)
            if last:
                log.warning(messages.LOG_CONNECTOR_FAILED, _host(url), outcome)
                raise ConnectorError(outcome if isinstance(outcome, int) else None, reason)
            log.info(messages.LOG_CONNECTOR_RETRY, _host(url), outcome, attempt + 1, self._attempts)
            self.retries += 1
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


async def _json_of(response: aiohttp.ClientResponse) -> Json:
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return {}
    return body if isinstance(body, dict) else {}
