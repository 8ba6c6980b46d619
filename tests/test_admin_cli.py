"""The operator command line: list, create (development) and delete connections, audited."""

from __future__ import annotations

import io

import pytest

from admin.cli import main
from storage.database import open_database
from storage.embedded import MEMORY
from tests.conftest import unique_database_name


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


@pytest.fixture
def cli_database(monkeypatch: pytest.MonkeyPatch, mongodb_uri: str) -> str:
    name = unique_database_name()
    monkeypatch.setenv("MONGODB_URI", mongodb_uri)
    monkeypatch.setenv("DATABASE_NAME", name)
    return name


def test_create_list_and_delete(cli_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Parents and runtime connections can be created, listed and deleted; children survive."""
    code, out = run(
        *[
            "connections",
            "create-parent",
            "--provider",
            "box",
            "--account",
            "admin@box",
            "--tenant",
            "t1",
        ]
    )
    assert code == 0
    parent_id = out.split("\t")[0]

    code, out = run(
        *f"connections create-runtime --parent {parent_id} --tenant t1 --user aad-jane "
        "--name Jane --account jane@box --status disconnected".split()
    )
    assert code == 0
    child_id = out.split("\t")[0]

    code, out = run(
        *f"connections create-runtime --parent {parent_id} --tenant t1 --user aad-jane "
        "--account jane@box".split()
    )
    assert code == 1
    assert "already has a runtime connection" in capsys.readouterr().err

    code, out = run("connections", "list")
    assert code == 0
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(row[0], row[1], row[4]) for row in rows] == [
        (parent_id, "parent", "connected"),
        (child_id, "runtime", "disconnected"),
    ]

    code, out = run("connections", "list", "--kind", "runtime")
    assert [line.split("\t")[0] for line in out.splitlines()] == [child_id]

    code, out = run("connections", "delete", parent_id)
    assert code == 0 and out.startswith("Deleted")
    code, out = run("connections", "delete", parent_id)
    assert code == 0 and "nothing deleted" in out
    code, out = run("connections", "list")
    assert [line.split("\t")[0] for line in out.splitlines()] == [child_id]


def test_unknown_parent_is_refused(cli_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A runtime connection for a parent that doesn't exist is refused with a sentence."""
    code, _ = run(
        "connections",
        "create-runtime",
        "--parent",
        "f" * 24,
        "--tenant",
        "t",
        "--user",
        "u",
        "--account",
        "a",
    )
    assert code == 1
    assert "No parent connection" in capsys.readouterr().err


async def test_changes_are_audited(cli_database: str, mongodb_uri: str) -> None:
    """Creating and deleting from the command line leaves audit events naming an operator."""
    import asyncio

    def work() -> str:
        _, out = run(
            *[
                "connections",
                "create-parent",
                "--provider",
                "box",
                "--account",
                "a@b",
                "--tenant",
                "t",
            ]
        )
        connection_id = out.split("\t")[0]
        run("connections", "delete", connection_id)
        return connection_id

    connection_id = await asyncio.to_thread(work)
    async with open_database(
        mongodb_uri=mongodb_uri, database_name=cli_database, data_dir=MEMORY
    ) as database:
        events = await database.audit.for_connection(connection_id)
    assert [e.action for e in events] == ["connection.created", "connection.deleted"]
    assert all(e.actor.kind == "operator" for e in events)
