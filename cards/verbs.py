"""Command words people type and card action verbs, defined once for cards and handlers alike."""

from __future__ import annotations

# Typed commands (matched case-insensitively, surrounding spaces ignored).
HELP = "help"
PERSONAL_CONNECTIONS = "personal_connections"
CONNECTIONS_ALIAS = "connections"

# Card action verbs (Action.Execute `verb`; `verb` inside Action.Submit data).
SHOW_CONNECTIONS = "show_connections"
PAGE = "page"
DISCONNECT = "disconnect"
DELETE = "delete"
CONFIRM_DELETE = "confirm_delete"
CANCEL_DELETE = "cancel_delete"
RECONNECT = "reconnect"

# Input and data keys shared by the cards and the handlers.
CONNECTION_INPUT = "connection_id"
PAGE_KEY = "page"
VERB_KEY = "verb"
# Set on the break notice's Reconnect: its answer keeps saying which account broke.
FROM_NOTICE_KEY = "from_notice"
