"""Who acts and in which tenant, read from the activity's JSON and from stored references."""

from __future__ import annotations

from bots.activity import IncomingActivity
from bots.identity import owner_of, tenant_id_of
from tests.support import activities
from tests.support.activities import JANE

SERVICE_URL = "http://127.0.0.1:9/"


def test_tenant_from_channel_data_first_then_the_conversation() -> None:
    """Teams puts the tenant in channelData.tenant.id; without it, conversation.tenantId
    (the identity fallback) names it, never an empty tenant."""
    body = activities.message(JANE, SERVICE_URL, "help")
    body["channelData"] = {"tenant": {"id": "tenant-from-channel-data"}}
    body["conversation"]["tenantId"] = "tenant-from-conversation"
    assert tenant_id_of(IncomingActivity.from_json(body)) == "tenant-from-channel-data"

    del body["channelData"]
    activity = IncomingActivity.from_json(body)
    assert tenant_id_of(activity) == "tenant-from-conversation"
    assert owner_of(activity).tenant_id == "tenant-from-conversation"


def test_a_stored_reference_keeps_its_tenant_in_either_spelling() -> None:
    """References stored by the SDK spell it `tenantID`; the bot's own spell it `tenantId`."""
    body = activities.message(JANE, SERVICE_URL, "help")
    reference = IncomingActivity.from_json(body).reference()
    assert reference["conversation"]["tenantId"] == JANE.tenant_id
    continued = IncomingActivity.continuing(reference, None)
    assert tenant_id_of(continued) == JANE.tenant_id
    assert owner_of(continued).aad_object_id == JANE.aad_object_id

    legacy = {**reference, "conversation": {"id": "a:1", "tenantID": "legacy-tenant"}}
    assert tenant_id_of(IncomingActivity.continuing(legacy, None)) == "legacy-tenant"


def test_a_teams_activity_never_passes_for_a_slack_person() -> None:
    """Slack people are stored as `slack:<team>` / `slack:<user>`; a Teams activity naming such
    ids is kept in its own namespace, so it can never reach a Slack person's connections."""
    from slack.identity import slack_owner
    from tests.support.activities import Person

    impostor = Person("29:x", "slack:U0JANE0001", "Jane", tenant_id="slack:T0FAKE001")
    owner = owner_of(IncomingActivity.from_json(activities.message(impostor, SERVICE_URL, "hi")))
    slack_jane = slack_owner(enterprise_id=None, team_id="T0FAKE001", user_id="U0JANE0001")
    assert (owner.tenant_id, owner.aad_object_id) != (
        slack_jane.tenant_id,
        slack_jane.aad_object_id,
    )
    assert owner.tenant_id == "teams:slack:T0FAKE001"
    assert owner.aad_object_id == "teams:slack:U0JANE0001"
