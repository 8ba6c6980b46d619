"""Fail closed: identity only from a trusted channel, replies only to this machine without
authentication, an explicit tenant list; over real HTTP against the running bot."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import messages
from cards import verbs
from settings import SettingsError, load_settings
from storage.models import ConnectionStatus
from tests.conftest import RunningBot, StartBot
from tests.support import activities
from tests.support.activities import JANE, MALLORY
from tests.support.data import owner, runtime
from tests.support.tokens import SigningKeyServer

APP_ID = "00000000-0000-0000-0000-00000000b07f"
APP_PASSWORD = "correct horse battery staple"


@pytest.fixture
async def signing_keys() -> AsyncIterator[SigningKeyServer]:
    server = SigningKeyServer()
    server.endorsements = ["msteams", "directline", "webchat"]
    await server.start()
    yield server
    await server.close()


async def secured(start_bot: StartBot, keys: SigningKeyServer, **overrides: str) -> RunningBot:
    values = {
        "app_id": APP_ID,
        "app_password": APP_PASSWORD,
        "openid_metadata_url": keys.metadata_url,
        "allowed_tenant_ids": JANE.tenant_id,
        **overrides,
    }
    return await start_bot(**values)


def bearer(keys: SigningKeyServer, bot: RunningBot) -> dict[str, str]:
    token = keys.token(audience=APP_ID, service_url=bot.service_url)
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("channel", "expected"),
    # Keys endorsed for the channel: an authentic token, refused as untrusted (403); keys not
    # endorsed for it: not even authentic (401); no channel at all: malformed (400).
    [("directline", 403), ("webchat", 403), ("emulator", 401), ("slack", 401), ("", 400)],
)
async def test_other_channels_cannot_assert_a_teams_identity(
    start_bot: StartBot, signing_keys: SigningKeyServer, channel: str, expected: int
) -> None:
    """A valid Bot Framework token for another channel, carrying a Teams user's ids, is
    refused with 403 and changes nothing (here: a Delete of that user's connection)."""
    bot = await secured(start_bot, signing_keys)
    connection = await runtime(bot.database, JANE, "box", "jane@box.example")
    forged = activities.card_action(
        JANE, bot.service_url, verbs.CONFIRM_DELETE, {verbs.CONNECTION_INPUT: connection.id}
    )
    forged["channelId"] = channel
    status, body = await bot.post(forged, headers=bearer(signing_keys, bot))
    assert status == expected
    if expected == 403:
        assert body == {"error": messages.HTTP_ACTIVITY_REFUSED}
    assert await bot.database.connections.get(connection.id) is not None
    assert bot.connector.sent == []
    # The same request from Teams is acted on (an invoke: answered in the HTTP response, so
    # the bot needs no outbound token from the internet).
    forged["channelId"] = "msteams"
    status, _ = await bot.post(forged, headers=bearer(signing_keys, bot))
    assert status == 200
    assert await bot.database.connections.get(connection.id) is None


async def test_allowed_channels_are_a_setting(
    start_bot: StartBot, signing_keys: SigningKeyServer
) -> None:
    """ALLOWED_CHANNEL_IDS lists the trusted channels: a channel added there is accepted."""
    bot = await secured(start_bot, signing_keys, allowed_channel_ids="msteams,directline")
    activity = activities.card_action(JANE, bot.service_url, verbs.SHOW_CONNECTIONS)
    activity["channelId"] = "directline"
    status, body = await bot.post(activity, headers=bearer(signing_keys, bot))
    assert status == 200 and body["statusCode"] == 200


@pytest.mark.parametrize(
    "service_url",
    [
        "http://example.com/",
        "https://smba.trafficmanager.net/amer/",
        "http://127.0.0.1.example.com/",
        "http://localhost@example.com/",
        "http://10.0.0.1:8080/",
        "file:///etc/passwd",
        "not a url",
    ],
)
async def test_without_authentication_replies_go_only_to_this_machine(
    bot: RunningBot, service_url: str
) -> None:
    """Authentication off: an activity whose serviceUrl is not loopback is refused (403) before
    anything is done or sent, so the bot cannot be made to send requests elsewhere."""
    connection = await runtime(bot.database, JANE, "box", "jane@box.example")
    for activity in (
        activities.message(JANE, service_url, verbs.SHOW_CONNECTIONS),
        activities.card_action(
            JANE, service_url, verbs.DISCONNECT, {verbs.CONNECTION_INPUT: connection.id}
        ),
    ):
        status, body = await bot.post(activity)
        assert status == 403
        assert body == {"error": messages.HTTP_ACTIVITY_REFUSED}
    stored = await bot.database.connections.get_for_owner(
        connection_id=connection.id, owner=owner(JANE)
    )
    assert stored is not None and stored.status is ConnectionStatus.CONNECTED


async def test_any_tenant_is_an_explicit_choice(
    start_bot: StartBot, signing_keys: SigningKeyServer
) -> None:
    """`*` admits every tenant; a list admits only its tenants (others get a sentence)."""
    listed = await secured(start_bot, signing_keys)
    invoke = activities.card_action(MALLORY, listed.service_url, verbs.SHOW_CONNECTIONS)
    status, body = await listed.post(invoke, headers=bearer(signing_keys, listed))
    assert (status, body["value"]) == (200, messages.TENANT_NOT_ALLOWED)

    anyone = await secured(start_bot, signing_keys, allowed_tenant_ids="*")
    invoke = activities.card_action(MALLORY, anyone.service_url, verbs.SHOW_CONNECTIONS)
    status, body = await anyone.post(invoke, headers=bearer(signing_keys, anyone))
    assert status == 200 and body["value"] != messages.TENANT_NOT_ALLOWED


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"host": "0.0.0.0"}, "HOST=0.0.0.0"),
        ({"host": "192.168.1.5"}, "HOST=192.168.1.5"),
        ({"app_id": APP_ID, "app_password": "pw"}, "ALLOWED_TENANT_IDS"),
        ({"app_id": APP_ID, "app_password": "pw", "allowed_tenant_ids": "*"}, "MONGODB_URI"),
        ({"allowed_tenant_ids": "*,tenant-a"}, "ALLOWED_TENANT_IDS"),
        ({"allowed_channel_ids": " , "}, "ALLOWED_CHANNEL_IDS"),
    ],
)
def test_fail_open_settings_are_refused(overrides: dict[str, str], named: str) -> None:
    """Configurations that would let anyone act as anyone are refused with one sentence."""
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None, **overrides)
    assert named in str(raised.value)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.2", "::1", "[::1]"])
def test_loopback_hosts_are_fine_without_authentication(host: str) -> None:
    """Local use needs no configuration on any loopback address."""
    assert load_settings(_env_file=None, host=host).host == host


async def test_a_list_of_audiences_is_refused(
    start_bot: StartBot, signing_keys: SigningKeyServer
) -> None:
    """A validly signed token whose audience is a list (even one naming this bot) is refused
    with 401, not accepted nor answered with a 500."""
    bot = await secured(start_bot, signing_keys)
    token = signing_keys.token(audience=[APP_ID, "other"], service_url=bot.service_url)  # type: ignore[arg-type]
    status, _ = await bot.post(
        activities.card_action(JANE, bot.service_url, verbs.SHOW_CONNECTIONS),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert status == 401
