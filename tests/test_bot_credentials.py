"""The Bot Framework credentials carry the real secret, never a SecretStr's mask."""

from __future__ import annotations

import aiohttp
from botframework.connector.auth import AuthenticationConstants, ClaimsIdentity

from bots.auth import TeamsBotAuthentication
from settings import load_settings

APP_ID = "00000000-0000-0000-0000-00000000b07f"
SECRET = "s3cret-from-the-vault"


async def test_adapter_credentials_carry_the_real_password() -> None:
    """The outbound connector's credentials hold the configured password in plain text."""
    settings = load_settings(_env_file=None, MicrosoftAppId=APP_ID, MicrosoftAppPassword=SECRET)
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
