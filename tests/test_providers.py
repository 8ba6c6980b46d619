"""Provider presets and the apps file: endpoints, PKCE, account naming, clear config errors."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from oauth.client import TokenSet, api_base_url, authorization_url
from oauth.providers import AppsConfigError, load_registry

ENV = {"SECRET": "s3cret-value"}


def registry(tmp_path: Path, text: str, environ: dict[str, str] | None = None):
    path = tmp_path / "apps.toml"
    path.write_text(text)
    return load_registry(path, ENV if environ is None else environ)


@pytest.mark.parametrize(
    ("host", "base"),
    [
        ("login.salesforce.com", "https://login.salesforce.com/services/oauth2"),
        ("test.salesforce.com", "https://test.salesforce.com/services/oauth2"),
        ("acme.my.salesforce.com", "https://acme.my.salesforce.com/services/oauth2"),
    ],
)
def test_salesforce_hosts(tmp_path: Path, host: str, base: str) -> None:
    """Salesforce production, sandbox and My Domain hosts; PKCE; revoke; instance_url wins."""
    provider = registry(
        tmp_path,
        f'[apps.salesforce]\npreset = "salesforce"\nhost = "{host}"\nclient_id = "c"\n'
        'client_secret_env = "SECRET"\n',
    ).get("salesforce")
    assert provider is not None
    assert provider.authorize_url == f"{base}/authorize"
    assert provider.token_url == f"{base}/token"
    assert provider.revoke_url == f"{base}/revoke"
    assert provider.pkce
    tokens = TokenSet("a", "r", None, [], {"instance_url": "https://acme.my.salesforce.com"})
    assert api_base_url(provider, tokens) == "https://acme.my.salesforce.com"


def test_salesforce_refuses_other_hosts(tmp_path: Path) -> None:
    """A host that is not Salesforce's is refused, naming the file and key."""
    with pytest.raises(AppsConfigError) as raised:
        registry(
            tmp_path,
            '[apps.sf]\npreset = "salesforce"\nhost = "evil.example"\nclient_id = "c"\n',
        )
    assert "apps.sf.host" in str(raised.value) and "apps.toml" in str(raised.value)


def test_servicenow_box_and_microsoft_presets(tmp_path: Path) -> None:
    """Per-instance ServiceNow, Box (no PKCE), Microsoft Graph (tenant, no revocation)."""
    apps = registry(
        tmp_path,
        '[apps.servicenow]\npreset = "servicenow"\ninstance = "acme"\nclient_id = "c"\n'
        '[apps.box]\npreset = "box"\nclient_id = "c"\n'
        '[apps.graph]\npreset = "microsoft_graph"\ntenant = "contoso.onmicrosoft.com"\n'
        'client_id = "c"\n',
    )
    servicenow, box, graph = apps.get("servicenow"), apps.get("box"), apps.get("graph")
    assert servicenow is not None and box is not None and graph is not None
    assert servicenow.token_url == "https://acme.service-now.com/oauth_token.do"
    assert servicenow.revoke_url == "https://acme.service-now.com/oauth_revoke_token.do"
    assert servicenow.api_base_url == "https://acme.service-now.com"
    assert box.revoke_url == "https://api.box.com/oauth2/revoke" and not box.pkce
    assert graph.authorize_url.startswith(
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/"
    )
    assert graph.revoke_url is None and "offline_access" in graph.scopes
    assert apps.display_name("graph") == "Microsoft Graph"


def test_custom_app(tmp_path: Path) -> None:
    """Any OAuth2 app described in configuration: URLs, scopes, PKCE choice, auth method."""
    provider = registry(
        tmp_path,
        '[apps.acme_crm]\npreset = "custom"\nname = "Acme CRM"\nclient_id = "c"\n'
        'client_secret_env = "SECRET"\nauthorize_url = "https://crm.acme.example/oauth/authorize"\n'
        'token_url = "https://crm.acme.example/oauth/token"\n'
        'revoke_url = "https://crm.acme.example/oauth/revoke"\n'
        'userinfo_url = "https://crm.acme.example/me"\nscopes = ["read", "write"]\n'
        'pkce = false\nclient_auth_method = "client_secret_basic"\naccount_field = "login"\n',
    ).get("acme_crm")
    assert provider is not None
    assert provider.name == "Acme CRM" and provider.scopes == ("read", "write")
    assert not provider.pkce and provider.client_auth_method == "client_secret_basic"
    assert provider.account_fields[0] == "login"
    url = authorization_url(provider, redirect_uri="https://bot/cb", state="s", code_verifier="v")
    assert "code_challenge" not in parse_qs(urlsplit(url).query)


def test_authorization_url_has_pkce_when_allowed(tmp_path: Path) -> None:
    """Providers that allow PKCE get an S256 challenge, never the verifier itself."""
    provider = registry(tmp_path, '[apps.box]\npreset = "sandbox"\nclient_id = "c"\n').get("box")
    assert provider is not None
    verifier = "v" * 64
    query = parse_qs(
        urlsplit(
            authorization_url(
                provider, redirect_uri="http://x/cb", state="st", code_verifier=verifier
            )
        ).query
    )
    assert query["code_challenge_method"] == ["S256"]
    assert verifier not in str(query)
    assert query["state"] == ["st"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[apps.x\n", "not valid TOML"),
        ('[apps.x]\npreset = "box"\nclient_id = "c"\ncolour = "red"\n', "apps.x.colour"),
        ('[apps.x]\npreset = "nope"\nclient_id = "c"\n', "apps.x.preset"),
        ('[apps.x]\npreset = "box"\n', "apps.x.client_id"),
        ('[apps.x]\npreset = "box"\nclient_id = "c"\nclient_secret_env = "MISSING"\n', "MISSING"),
        ('[apps.x]\npreset = "servicenow"\nclient_id = "c"\n', "instance"),
        ('[apps.x]\npreset = "custom"\nclient_id = "c"\n', "authorize_url"),
        (
            '[apps.x]\npreset = "custom"\nclient_id = "c"\nauthorize_url = "http://evil.example/a"\n'
            'token_url = "https://t.example/t"\n',
            "https",
        ),
        ('[apps.Bad-Key]\npreset = "box"\nclient_id = "c"\n', "lower-case"),
        ("[other]\nx = 1\n", "unknown top-level key"),
    ],
)
def test_bad_apps_file_names_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    """A bad apps file stops the start with a sentence naming the file and the key."""
    with pytest.raises(AppsConfigError) as raised:
        registry(tmp_path, text, environ={})
    assert expected in str(raised.value)
    assert str(tmp_path / "apps.toml") in str(raised.value)


def test_client_secret_never_in_repr(tmp_path: Path) -> None:
    """A provider's client secret does not show when it is printed or logged."""
    provider = registry(
        tmp_path, '[apps.box]\npreset = "box"\nclient_id = "c"\nclient_secret_env = "SECRET"\n'
    ).get("box")
    assert provider is not None and provider.client_secret == "s3cret-value"
    assert "s3cret-value" not in repr(provider)
