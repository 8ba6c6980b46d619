"""What the console's pages work with, built once by wiring.py and kept on the web app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from connections.service import ConnectionsService
from console.signin import ConsoleSignIn
from recipes.model import RecipeBook
from settings import Settings
from storage.admin_sessions import AdminSessionStore
from storage.audit import AuditLog
from storage.audit_search import AuditSearch
from storage.connection_search import ConnectionSearch
from storage.privileges import PrivilegeStore
from storage.recipe_settings import RecipeSettingsStore


@dataclass(frozen=True)
class ConsoleParts:
    settings: Settings
    signin: ConsoleSignIn
    sessions: AdminSessionStore
    privileges: PrivilegeStore
    connections: ConnectionsService
    search: ConnectionSearch
    audit: AuditLog
    audit_search: AuditSearch
    recipe_settings: RecipeSettingsStore
    book: RecipeBook
    # An app key ("box") to the name people see ("Box"), and the apps configured here.
    app_name: Callable[[str], str]
    app_keys: tuple[str, ...]


CONSOLE_KEY = web.AppKey("console", ConsoleParts)
