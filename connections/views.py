"""What the cards show of connections: plain data, never tokens.

Nothing here reads the store: `connections.service` makes these views from stored records, and
the card builders (`cards/`) draw them without importing storage.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

import messages

# Statuses (ConnectionStatus values) whose connection can be signed in again from the list.
RECONNECTABLE = frozenset({"disconnected", "needs_reauth"})


@dataclass(frozen=True)
class ConnectionView:
    """What a card shows of a connection: never tokens."""

    id: str
    app_name: str
    account: str
    status: str  # a ConnectionStatus value
    # Since when it has been in that status, for a signed-out one (None: not shown); UTC.
    since: datetime | None = None

    @property
    def reconnect_blocked(self) -> bool:
        """True when Reconnect cannot work for it (see `BlockedConnectionView`)."""
        return False

    @property
    def can_reconnect(self) -> bool:
        """Whether the list offers Reconnect for it: signed out, and able to sign in again."""
        return self.status in RECONNECTABLE and not self.reconnect_blocked

    @property
    def label(self) -> str:
        return messages.CONNECTION_LABEL.format(app=self.app_name, account=self.account)

    @property
    def status_label(self) -> str:
        return messages.STATUS_LABELS.get(self.status, self.status)


class BlockedConnectionView(ConnectionView):
    """A connection that Reconnect cannot sign in again: its app is not configured in this bot
    any more, or its parent connection is gone; the list offers no Reconnect for it.

    A kind of view rather than a field, so that a view's fields stay exactly what a card shows.
    """

    @property
    def reconnect_blocked(self) -> bool:
        return True


def blocked(view: ConnectionView) -> ConnectionView:
    """The same view, marked as one that Reconnect cannot sign in again."""
    # Every field, so that a field added to the view is never dropped here.
    return BlockedConnectionView(
        **{field.name: getattr(view, field.name) for field in fields(view)}
    )


@dataclass(frozen=True)
class BreakNotice:
    """What a break notice says (connections/notices.py): never tokens, never a provider's
    words."""

    connection_id: str
    app_name: str
    account: str
    reason: str  # a storage.notices reason
    why: str  # the reason in plain words
    since: datetime
    # Reconnect can work: the connection is kept and its app is configured.
    can_reconnect: bool
    # Whom to ask, for a connection an administrator removed.
    contact: str = ""

    @property
    def label(self) -> str:
        return messages.CONNECTION_LABEL.format(app=self.app_name, account=self.account)
