"""The Bot Framework credentials carry the real secret, never a SecretStr's mask."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import AuthenticationConstants, ClaimsIdentity

from bots.auth import TeamsBotAuthentication
from settings import load_settings
from tests.conftest import RunningBot
from tests.support import activities
from tests.support.activities import JANE

APP_ID = "00000000-0000-0000-0000-00000000b07f"
SECRET = "s3cret-from-the-vault"


async def test_adapter_credentials_carry_the_real_password() -> None:
    """The outbound connector's credentials hold the configured password in plain text."""
    settings = load_settings(
        _env_file=None,
        MicrosoftAppId=APP_ID,
        MicrosoftAppPassword=SECRET,
        ALLOWED_TENANT_IDS="*",
        MONGODB_URI="mongodb://127.0.0.1:9/",
    )
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())

    async with aiohttp.ClientSession() as session:
        auth = TeamsBotAuthentication(settings, session)
        identity = ClaimsIdentity({AuthenticationConstants.AUDIENCE_CLAIM: APP_ID}, True)
        client = await auth.create_connector_factory(identity).create("http://127.0.0.1:9/", None)

    credentials = client.config.credentials
    assert credentials.microsoft_app_id == APP_ID
    assert credentials.microsoft_app_password == SECRET


async def test_connector_clients_are_reused_per_service_url() -> None:
    """One ConnectorClient per (app id, serviceUrl, audience), not one per activity."""
    settings = load_settings(_env_file=None)
    async with aiohttp.ClientSession() as session:
        auth = TeamsBotAuthentication(settings, session)
        identity = ClaimsIdentity({}, True)
        first = await auth.create_connector_factory(identity).create("http://127.0.0.1:9/", None)
        again = await auth.create_connector_factory(identity).create("http://127.0.0.1:9/", None)
        other = await auth.create_connector_factory(identity).create("http://127.0.0.1:8/", None)
    assert first is again
    assert other is not first


async def test_turns_reuse_one_connector_client(
    bot: RunningBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the whole turn path, many activities build one ConnectorClient, not one each."""
    built: list[object] = []
    original = ConnectorClient.__init__

    def counting_init(self: ConnectorClient, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ConnectorClient, "__init__", counting_init)
    for _ in range(5):
        status, _ = await bot.post(activities.message(JANE, bot.service_url, "help"))
        assert status == 200
    assert len(bot.connector.sent) == 5
    assert len(built) == 1
