"""The registry of provider presets: for now their display names, which people see in cards.

Keys are stored in connection records (`provider`), so they never change once released.
"""

from __future__ import annotations

PROVIDER_NAMES: dict[str, str] = {
    "salesforce": "Salesforce",
    "servicenow": "ServiceNow",
    "box": "Box",
    "microsoft_graph": "Microsoft Graph",
    "sandbox": "Sandbox",
}


def display_name(provider: str) -> str:
    """The app name people see; an app described only in configuration shows its key."""
    return PROVIDER_NAMES.get(provider, provider.replace("_", " ").title())
