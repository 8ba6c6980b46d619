"""The rooms of the code and the one-way imports between them (docs/architecture.md).

Each top-level room may import only the rooms listed for it below; the Bot Framework SDK
(`botbuilder`, `botframework`, `msrest`) is not imported by the product at all: the Bot
Framework's wire format is spoken behind two doors of the project's own, the incoming one
(bots/endpoint.py, bots/auth.py, bots/activity.py, bots/bot.py, bots/identity.py) and the
outgoing one (bots/delivery.py, bots/connector.py, bots/bot_token.py). The SDK stays the
reference the tests check that wire format against, and the benchmark's baseline. Read with
`ast`, so a new import anywhere (inside a function too) that breaks the rule fails here, naming
the file, the line and the rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Room -> the rooms it may import (besides itself, the standard library and third parties).
# A room is a top-level package or module; `connections.views` and `recipes.results` are the
# plain data types that cards may render, and are rooms of their own for that reason.
SHARED = frozenset({"messages", "background", "settings"})
# What every surface and the command line build on: the services and their plain data.
SERVICES = SHARED | {
    "storage",
    "oauth",
    "connections",
    "connections.views",
    "recipes",
    "recipes.results",
}
ALLOWED: dict[str, frozenset[str]] = {
    "messages": frozenset(),
    "background": frozenset(),
    "settings": frozenset({"messages"}),
    "storage": SHARED,
    "oauth": SHARED | {"storage"},
    "connections.views": frozenset({"messages"}),
    "connections": SHARED | {"storage", "oauth", "connections.views"},
    "recipes.results": frozenset({"messages"}),
    "recipes": SHARED | {"storage", "oauth", "recipes.results"},
    "cards": frozenset({"messages", "connections.views", "recipes.results"}),
    "bots": SERVICES | {"cards"},
    # The admin console: a surface on the web, over the same services.
    "console": SERVICES,
    # Slack: a second chat surface over the same services; it knows nothing of Teams (`bots`)
    # and draws with Block Kit, reusing only the cards' date and paging helpers.
    "slack": SERVICES | {"cards"},
    "wiring": SERVICES | {"cards", "bots", "console", "slack"},
    "app": SHARED | {"wiring", "bots", "oauth", "storage", "console", "serving", "slack"},
    # Several worker processes on one port: the supervisor and the embedded store it owns.
    "serving": SHARED | {"storage"},
    "admin": SERVICES,
    "manifest": frozenset({"settings", "messages"}),
    "sandbox": frozenset({"app", "settings", "storage", "messages"}),
}
ROOMS = frozenset(ALLOWED)
SDK = ("botbuilder", "botframework", "msrest")
# Files that may import the SDK: none (a turn costs a tenth of the SDK's CPU without it).
SDK_DOORS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Import:
    path: str  # relative to the repository
    line: int
    module: str


def room_of(module: str) -> str | None:
    """The room a dotted module name belongs to (the most specific one), or None."""
    parts = module.split(".")
    for length in (2, 1):
        candidate = ".".join(parts[:length])
        if len(parts) >= length and candidate in ROOMS:
            return candidate
    return None


def source_files() -> Iterator[Path]:
    for room in ROOMS:
        top = room.split(".")[0]
        package = REPO / top
        if package.is_dir():
            yield from sorted(package.rglob("*.py"))
        elif (REPO / f"{top}.py").is_file():
            yield REPO / f"{top}.py"


def imports_of(path: Path) -> Iterator[Import]:
    relative = path.relative_to(REPO).as_posix()
    tree = ast.parse(path.read_text(), filename=relative)
    package = relative.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(relative, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield Import(relative, node.lineno, module)
            for alias in node.names:  # `from connections import views` names a room too
                if f"{module}.{alias.name}" in ROOMS:
                    yield Import(relative, node.lineno, f"{module}.{alias.name}")


def file_room(path: Path) -> str:
    relative = path.relative_to(REPO).as_posix().removesuffix(".py").replace("/", ".")
    room = room_of(relative)
    assert room is not None, relative
    return room


def all_imports() -> list[tuple[str, Import]]:
    return [(file_room(path), found) for path in source_files() for found in imports_of(path)]


def violations() -> list[str]:
    problems = []
    for room, found in all_imports():
        target = room_of(found.module)
        if target is None or target == room:
            continue
        # A module may import its own room's package (e.g. connections.views from connections).
        if target.split(".")[0] == room.split(".")[0] and "." not in room:
            continue
        if target not in ALLOWED[room]:
            problems.append(f"{found.path}:{found.line}: {room} may not import {found.module}")
    return sorted(set(problems))


def sdk_imports() -> list[str]:
    return sorted(
        f"{found.path}:{found.line}: imports {found.module}"
        for _, found in all_imports()
        if found.module.split(".")[0] in SDK and found.path not in SDK_DOORS
    )


def test_rooms_import_only_what_they_may() -> None:
    """Every import between rooms follows the table (storage knows no surface, cards no
    storage, recipes no Teams and no cards, app.py nothing of recipes, ...)."""
    assert violations() == []


def test_the_bot_framework_sdk_stays_behind_its_doors() -> None:
    """botbuilder / botframework / msrest are not imported by the product."""
    assert sdk_imports() == []


def test_every_room_file_is_known() -> None:
    """Each Python file of the rooms is in a room with rules (nothing escapes the table)."""
    assert all(file_room(path) in ALLOWED for path in source_files())


@pytest.mark.parametrize(
    ("room", "module", "why"),
    [
        ("recipes", "cards.recipes", "recipes/runner.py building result cards"),
        ("cards", "connections.service", "cards importing storage through the service"),
        ("cards", "storage.models", "cards reading stored models"),
        ("app", "recipes.definitions", "app.py loading recipes itself"),
        ("storage", "bots.turn", "storage knowing a surface"),
        ("admin", "bots.bot", "the command line going through Teams"),
    ],
)
def test_each_former_seam_violation_would_fail(room: str, module: str, why: str) -> None:
    """The rules catch each seam fault the code once had."""
    target = room_of(module)
    assert target is not None and target != room and target not in ALLOWED[room], why


def test_sdk_rule_would_catch_a_handler_using_turn_context() -> None:
    source = "from botbuilder.core import TurnContext\n"
    tree = ast.parse(source)
    [node] = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert node.module is not None and node.module.split(".")[0] in SDK
    assert "bots/connections_handlers.py" not in SDK_DOORS
