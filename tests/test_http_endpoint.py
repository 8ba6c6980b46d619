"""`/api/messages`, `/healthz` and `/readyz` over real HTTP: bad input, tokens, probes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import messages
from tests.conftest import RunningBot, StartBot
from tests.support import activities
from tests.support.activities import JANE
from tests.support.tokens import SigningKeyServer

APP_ID = "00000000-0000-0000-0000-00000000b07f"
APP_PASSWORD = "correct horse battery staple"


async def test_health_and_readiness(bot: RunningBot) -> None:
    """/healthz says alive; /readyz says ready when the database answers."""
    health = await bot.client.get("/healthz")
    ready = await bot.client.get("/readyz")
    assert (health.status, await health.json()) == (200, {"status": "alive"})
    assert (ready.status, await ready.json()) == (200, {"status": "ready"})


@pytest.mark.parametrize(
    ("content_type", "body", "status", "message"),
    [
        ("text/plain", b"hello", 415, messages.HTTP_NOT_JSON_MEDIA_TYPE),
        ("application/json", b"{not json", 400, messages.HTTP_INVALID_JSON),
        ("application/json", b"\xff\xfe", 400, messages.HTTP_INVALID_JSON),
        ("application/json", b"[]", 400, messages.HTTP_NOT_AN_ACTIVITY),
        ("application/json", b'[{"type": "message"}]', 400, messages.HTTP_NOT_AN_ACTIVITY),
        ("application/json", b'"message"', 400, messages.HTTP_NOT_AN_ACTIVITY),
        ("application/json", b"{}", 400, messages.HTTP_MISSING_FIELD.format(field="type")),
        (
            "application/json",
            b'{"type": "message", "text": "hi"}',
            400,
            messages.HTTP_MISSING_FIELD.format(field="serviceUrl"),
        ),
    ],
)
async def test_malformed_http_input_gets_a_clear_4xx(
    bot: RunningBot, content_type: str, body: bytes, status: int, message: str
) -> None:
    """Bad bodies are answered with 400/415 and a short sentence, never a 500."""
    response = await bot.client.post(
        "/api/messages", data=body, headers={"Content-Type": content_type}
    )
    assert response.status == status
    assert (await response.json()) == {"error": message}
    assert bot.connector.sent == []


@pytest.mark.parametrize("field", ["type", "channelId", "conversation"])
async def test_activity_without_required_fields_is_rejected(bot: RunningBot, field: str) -> None:
    """An activity missing its type, channel or conversation gets a 400 naming the field."""
    activity = activities.message(JANE, bot.service_url, "help")
    del activity[field]
    status, body = await bot.post(activity)
    assert status == 400
    assert field in body["error"]
    assert bot.connector.sent == []


async def test_activity_with_wrong_shapes_is_rejected(bot: RunningBot) -> None:
    """`from` that is not an object is a 400, not a crash."""
    activity = activities.message(JANE, bot.service_url, "help")
    activity["from"] = "jane"
    status, _ = await bot.post(activity)
    assert status == 400


@pytest.fixture
async def signing_keys() -> AsyncIterator[SigningKeyServer]:
    server = SigningKeyServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def secured_bot(start_bot: StartBot, signing_keys: SigningKeyServer) -> RunningBot:
    return await start_bot(
        app_id=APP_ID,
        allowed_tenant_ids="*",
        app_password=APP_PASSWORD,
        openid_metadata_url=signing_keys.metadata_url,
    )


def unknown_invoke(bot: RunningBot) -> dict[str, Any]:
    # An invoke is answered in the HTTP response, so a valid token can be shown to pass without
    # the bot fetching an outbound token from the internet.
    return activities.invoke(JANE, bot.service_url, "signin/failure", {})


async def test_valid_token_is_accepted(
    secured_bot: RunningBot, signing_keys: SigningKeyServer
) -> None:
    """With an app id set, a token signed by a published key for this bot is accepted."""
    token = signing_keys.token(audience=APP_ID, service_url=secured_bot.service_url)
    status, _ = await secured_bot.post(
        unknown_invoke(secured_bot), headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200


def _other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    ("case", "make_header"),
    [
        ("missing", lambda keys, url: None),
        ("empty bearer", lambda keys, url: "Bearer "),
        ("not bearer", lambda keys, url: "Basic dXNlcjpwYXNz"),
        ("garbage", lambda keys, url: "Bearer not.a.jwt"),
        ("garbage2", lambda keys, url: "Bearer abc"),
        (
            "wrong signature",
            lambda keys, url: (
                "Bearer " + keys.token(audience=APP_ID, service_url=url, key=_other_key())
            ),
        ),
        (
            "unknown key id",
            lambda keys, url: (
                "Bearer " + keys.token(audience=APP_ID, service_url=url, key_id="rolled-away")
            ),
        ),
        (
            "wrong audience",
            lambda keys, url: "Bearer " + keys.token(audience="someone-else", service_url=url),
        ),
        (
            "wrong issuer",
            lambda keys, url: (
                "Bearer "
                + keys.token(audience=APP_ID, service_url=url, issuer="https://evil.example")
            ),
        ),
        (
            "expired",
            lambda keys, url: (
                "Bearer " + keys.token(audience=APP_ID, service_url=url, expires_in=-3600)
            ),
        ),
        (
            "other service url",
            lambda keys, url: (
                "Bearer " + keys.token(audience=APP_ID, service_url="https://attacker.example/")
            ),
        ),
    ],
)
async def test_bad_or_missing_token_is_401(
    secured_bot: RunningBot,
    signing_keys: SigningKeyServer,
    case: str,
    make_header: Any,
) -> None:
    """Missing, malformed, forged, expired or misdirected tokens get 401 and run nothing."""
    await secured_bot.database.connections.list_all()  # the bot is up
    header = make_header(signing_keys, secured_bot.service_url)
    status, body = await secured_bot.post(
        activities.message(JANE, secured_bot.service_url, "help"),
        headers={"Authorization": header} if header else None,
    )
    assert status == 401, case
    assert body == {"error": messages.HTTP_UNAUTHORIZED}
    assert secured_bot.connector.sent == []


async def test_key_not_endorsed_for_the_channel_is_401(
    start_bot: StartBot, signing_keys: SigningKeyServer
) -> None:
    """A key endorsed for other channels only cannot sign Teams activities."""
    signing_keys.endorsements = ["webchat"]
    bot = await start_bot(
        app_id=APP_ID,
        allowed_tenant_ids="*",
        app_password=APP_PASSWORD,
        openid_metadata_url=signing_keys.metadata_url,
    )
    token = signing_keys.token(audience=APP_ID, service_url=bot.service_url)
    status, _ = await bot.post(unknown_invoke(bot), headers={"Authorization": f"Bearer {token}"})
    assert status == 401


async def test_unreachable_signing_keys_is_503(start_bot: StartBot) -> None:
    """When the keys cannot be fetched, the bot says so (503) instead of failing with a 500."""
    bot = await start_bot(
        app_id=APP_ID,
        allowed_tenant_ids="*",
        app_password=APP_PASSWORD,
        openid_metadata_url="http://127.0.0.1:9/v1/.well-known/openidconfiguration",
    )
    token = SigningKeyServer().token(audience=APP_ID, service_url=bot.service_url)
    status, body = await bot.post(unknown_invoke(bot), headers={"Authorization": f"Bearer {token}"})
    assert status == 503
    assert body == {"error": messages.HTTP_AUTH_UNAVAILABLE}


async def test_signing_keys_are_fetched_once_not_per_request(
    secured_bot: RunningBot, signing_keys: SigningKeyServer
) -> None:
    """Keys are cached: ten requests cost one metadata and one key fetch."""
    token = signing_keys.token(audience=APP_ID, service_url=secured_bot.service_url)
    for _ in range(10):
        status, _ = await secured_bot.post(
            unknown_invoke(secured_bot), headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 200
    assert signing_keys.requests == 2


async def test_old_signing_keys_are_refreshed_without_holding_a_turn(
    secured_bot: RunningBot, signing_keys: SigningKeyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the cached keys are due for a refresh, turns keep being checked with them while the
    refresh runs in the background, even when the key endpoint stalls."""
    token = signing_keys.token(audience=APP_ID, service_url=secured_bot.service_url)
    headers = {"Authorization": f"Bearer {token}"}
    status, _ = await secured_bot.post(unknown_invoke(secured_bot), headers=headers)
    assert status == 200
    assert signing_keys.requests == 2

    monkeypatch.setattr("bots.auth.KEYS_MAX_AGE_S", 0)  # every key is due for a refresh
    signing_keys.stalled = asyncio.Event()
    try:
        async with asyncio.timeout(2):  # a stalled fetch would take the whole 3 s wait or more
            for _ in range(5):
                status, _ = await secured_bot.post(unknown_invoke(secured_bot), headers=headers)
                assert status == 200
        assert signing_keys.requests == 3  # one background fetch, started once, still stalled
    finally:
        signing_keys.stalled.set()


async def test_auth_off_without_app_id_is_logged_once(
    start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    """With no app id, authentication is off and the log says so exactly once."""
    with caplog.at_level(logging.INFO):
        bot = await start_bot()
        for _ in range(3):
            await bot.post(activities.message(JANE, bot.service_url, "help"))
    warnings = [r for r in caplog.records if r.getMessage() == messages.LOG_AUTH_OFF]
    assert len(warnings) == 1
    assert len(bot.connector.sent) == 3


PLAIN = b'{"type": "message", "text": "personal_connections", "id": "2026-11-22T10:00:00.000Z"}'


@pytest.mark.parametrize(
    ("body", "needs"),
    [
        (PLAIN, False),
        (PLAIN.replace(b"personal", b"p\\u00e9rsonal"), True),  # a JSON escape
        (PLAIN.replace(b"personal", "pérsonal".encode()), False),  # plain UTF-8 text
        (PLAIN.replace(b"personal", "\ud55c".encode()), True),  # lead byte 0xED
        (PLAIN.replace(b"personal", b"p\x00"), True),  # a NUL (UTF-16/32 bodies)
        (PLAIN.replace(b'"id": "2026', b'"n": 1234567890123456789, "id": "2026'), True),
        (PLAIN.replace(b'"id": "2026', b'"n": 123456789012345678, "id": "2026'), False),
        (b'{"a": ' + b"[" * 64 + b"]" * 64 + b"}", True),  # deeper than MAX_NESTING
    ],
)
def test_the_walk_over_every_value_is_skipped_only_when_nothing_can_need_it(
    body: bytes, needs: bool
) -> None:
    from bots.endpoint import _may_need_sanitizing

    assert _may_need_sanitizing(body) is needs
