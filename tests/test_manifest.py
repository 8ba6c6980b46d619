"""The Teams app package: the rendered manifest against the official v1.24 schema, the zip's
contents and icons, and the build command's handling of bad input."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image

from manifest import build
from manifest.build import build_package, default_app_id, main, render_manifest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = (
    REPO_ROOT
    / "node_modules/@microsoft/app-manifest/build/json-schemas/teams/v1.24"
    / "MicrosoftTeams.schema.json"
)

BOT_ID = "0f5c7f3e-6a41-4c1e-9a8b-2d3e4f5a6b7c"
APP_ID = "9d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
BASE_URL = "https://bot.example.com"
# Hosts the bot redirects people to for sign-in; none of them may appear in validDomains.
PROVIDER_HOSTS = (
    "login.salesforce.com",
    "account.box.com",
    "service-now.com",
    "login.microsoftonline.com",
    "token.botframework.com",
)
COMMANDS = ("help", "personal_connections", "connections")
SCOPES = ("personal", "team", "groupChat")
ENV_VARS = ("MicrosoftAppId", "APP_ID", "PUBLIC_BASE_URL")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@functools.cache
def _load_schema() -> dict[str, Any]:
    # Called inside the tests, not from a fixture, so a missing schema makes them FAIL (not error
    # or skip): the package must never pass unvalidated.
    if not SCHEMA_PATH.is_file():
        pytest.fail(
            f"The Teams manifest schema is missing at {SCHEMA_PATH}; run `npm ci` in {REPO_ROOT}.",
            pytrace=False,
        )
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@pytest.fixture
def manifest() -> dict[str, Any]:
    return render_manifest(bot_id=BOT_ID, base_url=BASE_URL, app_id=APP_ID, version="1.2.3")


def _schema_errors(schema: dict[str, Any], instance: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


def test_manifest_validates_against_official_schema(manifest: dict[str, Any]) -> None:
    """The rendered manifest is valid under the official Teams v1.24 JSON schema."""
    schema = _load_schema()
    assert _schema_errors(schema, manifest) == []


def test_manifest_declares_version_1_24_and_its_schema_url(manifest: dict[str, Any]) -> None:
    """manifestVersion and $schema name v1.24 (draft-04 validation ignores the schema's `const`)."""
    schema = _load_schema()
    assert schema["properties"]["manifestVersion"]["const"] == "1.24"
    assert manifest["manifestVersion"] == "1.24"
    assert manifest["$schema"] == (
        "https://developer.microsoft.com/en-us/json-schemas/teams/v1.24/MicrosoftTeams.schema.json"
    )


def test_schema_check_catches_a_broken_manifest(manifest: dict[str, Any]) -> None:
    """The schema check is live: a non-GUID botId and a missing icon are reported."""
    schema = _load_schema()
    manifest["bots"][0]["botId"] = "not-a-guid"
    del manifest["icons"]["outline"]
    errors = "\n".join(_schema_errors(schema, manifest))
    assert "bots/0/botId" in errors
    assert "outline" in errors


def test_ids_version_and_placeholders(manifest: dict[str, Any]) -> None:
    """botId, id and version are the given ones, and no template placeholder is left."""
    assert manifest["bots"][0]["botId"] == BOT_ID
    assert manifest["id"] == APP_ID
    assert manifest["version"] == "1.2.3"
    assert "{{" not in json.dumps(manifest)


def test_app_id_defaults_to_a_stable_uuid5_of_the_bot_id() -> None:
    """Without --app-id the app id is a UUID5 of the bot id: stable, distinct from it, a GUID."""
    first = render_manifest(bot_id=BOT_ID, base_url=BASE_URL)["id"]
    again = render_manifest(bot_id=BOT_ID.upper(), base_url=BASE_URL)["id"]
    other = render_manifest(bot_id=APP_ID, base_url=BASE_URL)["id"]
    assert first == again == default_app_id(BOT_ID)
    assert first not in (BOT_ID, other)
    assert build._GUID.match(first)


def test_valid_domains_is_only_the_bot_host(manifest: dict[str, Any]) -> None:
    """validDomains is exactly the bot's own host, never an OAuth provider's host."""
    assert manifest["validDomains"] == ["bot.example.com"]
    for provider_host in PROVIDER_HOSTS:
        assert not any(provider_host in domain for domain in manifest["validDomains"])


@pytest.mark.parametrize(
    ("base_url", "domain"),
    [
        ("http://localhost:3978", "localhost:3978"),
        ("https://Bot.Example.com:8443/teams/", "bot.example.com:8443"),
        ("https://bot.example.com:443", "bot.example.com"),
        ("http://127.0.0.1:3978/", "127.0.0.1:3978"),
    ],
)
def test_valid_domain_keeps_a_non_default_port_only(base_url: str, domain: str) -> None:
    """A validDomains entry is the host, with the port only when it is not the scheme's default."""
    rendered = render_manifest(bot_id=BOT_ID, base_url=base_url)
    assert rendered["validDomains"] == [domain]


def test_developer_urls_come_from_the_base_url() -> None:
    """websiteUrl is the base URL; privacyUrl and termsOfUseUrl are /privacy and /terms under it."""
    developer = render_manifest(bot_id=BOT_ID, base_url="https://bot.example.com/teams/")[
        "developer"
    ]
    assert developer["websiteUrl"] == "https://bot.example.com/teams"
    assert developer["privacyUrl"] == "https://bot.example.com/teams/privacy"
    assert developer["termsOfUseUrl"] == "https://bot.example.com/teams/terms"


def test_bot_scopes_and_flags(manifest: dict[str, Any]) -> None:
    """The one bot installs in personal, team and groupChat, without files, not notify-only."""
    (bot,) = manifest["bots"]
    assert sorted(bot["scopes"]) == sorted(SCOPES)
    assert bot["supportsFiles"] is False
    assert bot["isNotificationOnly"] is False


def test_every_scope_lists_every_command(manifest: dict[str, Any]) -> None:
    """Each bot scope has a command list offering help, personal_connections and connections."""
    command_lists = manifest["bots"][0]["commandLists"]
    for scope in SCOPES:
        lists = [entry for entry in command_lists if scope in entry["scopes"]]
        assert len(lists) == 1, f"expected one command list for {scope}"
        titles = [command["title"] for command in lists[0]["commands"]]
        assert sorted(titles) == sorted(COMMANDS)
    descriptions = {
        command["title"]: command["description"] for command in command_lists[0]["commands"]
    }
    assert descriptions == {
        "help": "Show what I can do",
        "personal_connections": "List your personal connections to other apps",
        "connections": "Same as personal_connections",
    }


def test_package_holds_manifest_and_icons_at_its_root(tmp_path: Path) -> None:
    """The zip holds exactly manifest.json, color.png and outline.png, at its root."""
    out = build_package(bot_id=BOT_ID, base_url=BASE_URL, out=tmp_path / "pkg" / "app.zip")
    assert out == tmp_path / "pkg" / "app.zip"
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        packaged = json.loads(archive.read("manifest.json"))
    assert packaged == render_manifest(bot_id=BOT_ID, base_url=BASE_URL)
    assert packaged["icons"] == {"color": "color.png", "outline": "outline.png"}
    assert not list(tmp_path.glob("pkg/*.partial"))


def test_package_icons_have_the_sizes_and_colours_teams_requires(tmp_path: Path) -> None:
    """color.png is an opaque 192x192; outline.png is 32x32, white on a transparent background."""
    out = build_package(bot_id=BOT_ID, base_url=BASE_URL, out=tmp_path / "app.zip")
    with zipfile.ZipFile(out) as archive:
        archive.extract("color.png", tmp_path)
        archive.extract("outline.png", tmp_path)

    with Image.open(tmp_path / "color.png") as color:
        assert color.format == "PNG"
        assert color.size == (192, 192)
        alpha = color.convert("RGBA").getchannel("A")
        assert alpha.getextrema() == (255, 255), "the colour icon must be fully opaque"

    with Image.open(tmp_path / "outline.png") as outline:
        assert outline.format == "PNG"
        assert outline.size == (32, 32)
        assert "A" in outline.getbands(), "the outline icon needs an alpha channel"
        raw = outline.convert("RGBA").tobytes()
    pixels = [tuple(raw[i : i + 4]) for i in range(0, len(raw), 4)]
    not_white = [p for p in pixels if p[3] != 0 and p[:3] != (255, 255, 255)]
    assert not_white == [], "outline pixels must be white or fully transparent"
    assert any(p[3] == 0 for p in pixels), "the outline icon needs a transparent background"
    assert any(p[3] == 255 for p in pixels), "the outline icon must draw something"


def test_build_command_reads_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without flags, bot id and base URL come from APP_ID and PUBLIC_BASE_URL."""
    monkeypatch.setenv("APP_ID", BOT_ID)
    monkeypatch.setenv("PUBLIC_BASE_URL", "http://localhost:3978")
    out = tmp_path / "app.zip"
    assert main(["--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with zipfile.ZipFile(out) as archive:
        packaged = json.loads(archive.read("manifest.json"))
    assert packaged["bots"][0]["botId"] == BOT_ID
    assert packaged["validDomains"] == ["localhost:3978"]


def test_missing_bot_id_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --bot-id and no MicrosoftAppId/APP_ID: exit 2 with a message naming both, no zip."""
    out = tmp_path / "app.zip"
    assert main(["--base-url", BASE_URL, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "--bot-id" in error
    assert "MicrosoftAppId" in error
    assert not out.exists()


def test_missing_base_url_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --base-url and no PUBLIC_BASE_URL: exit 2 with a message naming both, no zip."""
    out = tmp_path / "app.zip"
    assert main(["--bot-id", BOT_ID, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "--base-url" in error
    assert "PUBLIC_BASE_URL" in error
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--bot-id", BOT_ID, "--base-url", "http://bot.example.com"], "https"),
        (["--bot-id", "my-bot", "--base-url", BASE_URL], "GUID"),
        (["--bot-id", BOT_ID, "--base-url", BASE_URL, "--app-id", "x"], "GUID"),
        (["--bot-id", BOT_ID, "--base-url", BASE_URL, "--version", "1.0"], "MAJOR.MINOR.PATCH"),
        (["--bot-id", BOT_ID, "--base-url", "bot.example.com"], "absolute"),
        (["--bot-id", BOT_ID, "--base-url", "https://bot.example.com/?x=1"], "query"),
    ],
)
def test_bad_input_exits_2(
    args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Plain http for a public host, a non-GUID id or a non-semver version: exit 2, no zip."""
    out = tmp_path / "app.zip"
    assert main([*args, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert expected in error
    assert error.count("\n") == 1, "one line for the operator, no traceback"
    assert not out.exists()


def test_python_dash_m_manifest_builds_the_package(tmp_path: Path) -> None:
    """`python -m manifest` runs the same build as `python -m manifest.build`."""
    out = tmp_path / "app.zip"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "manifest",
            "--bot-id",
            BOT_ID,
            "--base-url",
            BASE_URL,
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(out) as archive:
        assert json.loads(archive.read("manifest.json"))["bots"][0]["botId"] == BOT_ID
