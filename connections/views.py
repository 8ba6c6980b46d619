"""What the cards show of connections: plain data, never tokens.

Nothing here reads the store: `connections.service` makes these views from stored records, and
the card builders (`cards/`) draw them without importing storage.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def label(self) -> str:
        return messages.CONNECTION_LABEL.format(app=self.app_name, account=self.account)

    @property
    def status_label(self) -> str:
        return messages.STATUS_LABELS.get(self.status, self.status)
