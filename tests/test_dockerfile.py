"""The Dockerfile, read as a container engine would (none can pull images here).

It must build the production install on an official Python slim image, run as a non-root user,
expose and health-check the bot's default port, and start `app.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest

from settings import Settings
from tests.conftest import StartBot, free_port

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PORT = Settings.model_fields["port"].default


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        found.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def arguments_of(keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions() if name == keyword]


def exec_form(arguments: str) -> list[str]:
    command = json.loads(arguments)
    assert isinstance(command, list) and all(isinstance(part, str) for part in command)
    return command


def environment_values() -> dict[str, str]:
    values: dict[str, str] = {}
    for arguments in arguments_of("ENV"):
        values.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", arguments))
    return values


def production_install() -> str:
    """The production install command docs/deployment.md gives."""
    guide = (REPO / "docs" / "deployment.md").read_text()
    found = re.search(r"Install without the embedded store: `([^`]+)`", guide)
    assert found, "docs/deployment.md names no production install command"
    return found.group(1)


def test_base_image_is_an_official_python_slim_tag() -> None:
    [base] = arguments_of("FROM")
    assert re.fullmatch(
        r"(docker\.io/library/)?python:3\.(\d+)-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", base
    ), base
    minor = int(re.search(r"python:3\.(\d+)", base).group(1))  # type: ignore[union-attr]
    assert minor >= 11  # pyproject's requires-python


def test_installs_the_package_as_the_production_guide_does() -> None:
    installs = [run for run in arguments_of("RUN") if "pip install" in run]
    assert len(installs) == 1
    [install] = installs
    command = production_install()
    assert "local" not in command  # production has no embedded store
    assert command.replace("pip install", "pip install --no-cache-dir") in install
    assert "local" not in install and "sandbox" not in install


def test_runs_as_a_non_root_user() -> None:
    users = arguments_of("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit()  # Kubernetes' runAsNonRoot can only check a numeric user


def test_exposes_the_default_port_on_every_interface() -> None:
    assert arguments_of("EXPOSE") == [str(DEFAULT_PORT)]
    values = environment_values()
    assert values["HOST"] == "0.0.0.0"
    assert values.get("PORT", str(DEFAULT_PORT)) == str(DEFAULT_PORT)


def test_starts_app_py() -> None:
    [command] = arguments_of("CMD")
    assert exec_form(command)[-1] == "app.py"
    assert not arguments_of("ENTRYPOINT")


def healthcheck_command() -> list[str]:
    [healthcheck] = arguments_of("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert "--timeout=" in options
    return exec_form(command)


def test_healthcheck_requests_healthz_on_the_default_port() -> None:
    command = healthcheck_command()
    assert command[0] in {"python", "python3"}  # slim has no curl
    script = " ".join(command)
    assert "/healthz" in script and str(DEFAULT_PORT) in script


async def run_healthcheck(port: int) -> int:
    """The HEALTHCHECK's command (this interpreter for `python3`); its exit status.

    A subprocess the event loop waits for: the bot under test serves on this same loop.
    """
    python, *arguments = healthcheck_command()
    assert python in {"python", "python3"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *arguments,
        env={**os.environ, "PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), 30)


async def test_healthcheck_passes_on_a_serving_bot_and_fails_without_one(
    start_bot: StartBot,
) -> None:
    """The HEALTHCHECK's own command, run against a bot: 0 while it serves, not 0 without it."""
    port = free_port()
    await start_bot(port=port)
    assert await run_healthcheck(port) == 0
    assert await run_healthcheck(free_port()) != 0


@pytest.mark.parametrize("entry", ["data/", "node_modules/", "test-artifacts/", ".git", ".env"])
def test_dockerignore_keeps_local_state_out(entry: str) -> None:
    entries = (REPO / ".dockerignore").read_text().splitlines()
    assert entry in entries
