"""Configuration: defaults for local use, Bot Framework names, and one-sentence failures."""

from __future__ import annotations

import pytest

from settings import BOT_FRAMEWORK_OPENID_METADATA_URL, SettingsError, load_settings


def test_defaults_need_no_configuration() -> None:
    """With nothing set the bot runs locally: port 3978, auth off, embedded store, any tenant."""
    settings = load_settings(_env_file=None)
    assert settings.port == 3978
    assert not settings.auth_enabled
    assert settings.mongodb_uri is None
    assert str(settings.openid_metadata_url) == BOT_FRAMEWORK_OPENID_METADATA_URL
    assert settings.tenant_allowed("any-tenant")


@pytest.mark.parametrize(
    ("variables", "expected_id"),
    [
        ({"MicrosoftAppId": "id-1", "MicrosoftAppPassword": "pw"}, "id-1"),
        ({"APP_ID": "id-2", "APP_PASSWORD": "pw"}, "id-2"),
        ({"MICROSOFT_APP_ID": "id-3", "MICROSOFT_APP_PASSWORD": "pw"}, "id-3"),
    ],
)
def test_bot_framework_names_are_accepted(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected_id: str
) -> None:
    """The customary MicrosoftAppId-style names configure the app id and password."""
    monkeypatch.setenv("ALLOWED_TENANT_IDS", "*")
    monkeypatch.setenv("MONGODB_URI", "mongodb://db.example/")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(_env_file=None)
    assert settings.app_id == expected_id
    assert settings.app_password is not None
    assert settings.app_password.get_secret_value() == "pw"
    assert settings.auth_enabled


def test_secrets_never_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passwords and the database URI are SecretStr: printing settings never shows them."""
    monkeypatch.setenv("MicrosoftAppId", "id")
    monkeypatch.setenv("ALLOWED_TENANT_IDS", "*")
    monkeypatch.setenv("MicrosoftAppPassword", "hunter2-password")
    monkeypatch.setenv("MONGODB_URI", "mongodb://user:db-password@db.example/")
    settings = load_settings(_env_file=None)
    shown = repr(settings) + str(settings) + str(settings.model_dump())
    assert "hunter2-password" not in shown
    assert "db-password" not in shown


def test_allowed_tenants_from_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """ALLOWED_TENANT_IDS lists tenants separated by commas; others are refused."""
    monkeypatch.setenv("ALLOWED_TENANT_IDS", " tenant-a, tenant-b ,")
    settings = load_settings(_env_file=None)
    assert settings.allowed_tenant_ids == {"tenant-a", "tenant-b"}
    assert settings.tenant_allowed("tenant-b")
    assert not settings.tenant_allowed("tenant-c")
    assert not settings.tenant_allowed(None)


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"PORT": "abc"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"PUBLIC_BASE_URL": "not a url"}, "PUBLIC_BASE_URL"),
        ({"OPENID_METADATA_URL": "ftp://x"}, "OPENID_METADATA_URL"),
        ({"MicrosoftAppType": "Sideways"}, "MicrosoftAppType"),
        ({"DATABASE_NAME": "bad name!"}, "DATABASE_NAME"),
        ({"MicrosoftAppId": "id"}, "MicrosoftAppPassword"),
        (
            {
                "MicrosoftAppId": "id",
                "MicrosoftAppPassword": "pw",
                "MicrosoftAppType": "SingleTenant",
            },
            "MicrosoftAppTenantId",
        ),
    ],
)
def test_invalid_settings_fail_with_one_sentence_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    """A missing or invalid setting stops the start with one sentence naming the variable."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None)
    message = str(raised.value)
    assert named in message
    assert "\n" not in message
    assert message.endswith(".")
