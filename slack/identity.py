"""Who a person in Slack is, in the services' terms.

A Slack person is (enterprise or workspace id, user id). They become an `Owner` whose tenant is
`slack:<enterprise id, else team id>` and whose object id is `slack:<user id>`: never equal to
an Entra tenant or object id, so a Slack person is always a different owner from any Teams
identity, and every query and the one-connection-per-person index stay correct unchanged. A
parent connection serves one Slack workspace (or Enterprise Grid organisation) the same way.
"""

from __future__ import annotations

from storage.models import Owner

PREFIX = "slack:"


def slack_tenant(*, enterprise_id: str | None, team_id: str | None) -> str:
    """The tenant of a Slack workspace, or of its Enterprise Grid organisation."""
    return f"{PREFIX}{enterprise_id or team_id or ''}"


def slack_owner(
    *, enterprise_id: str | None, team_id: str | None, user_id: str, name: str = ""
) -> Owner:
    """The owner a Slack person's connections are stored under."""
    return Owner(
        tenant_id=slack_tenant(enterprise_id=enterprise_id, team_id=team_id),
        aad_object_id=f"{PREFIX}{user_id}",
        name=name,
    )


def is_slack(owner_or_tenant: Owner | str) -> bool:
    tenant = owner_or_tenant if isinstance(owner_or_tenant, str) else owner_or_tenant.tenant_id
    return tenant.startswith(PREFIX)


def user_id_of(owner: Owner) -> str:
    """The Slack user id of a Slack owner."""
    return owner.aad_object_id.removeprefix(PREFIX)
