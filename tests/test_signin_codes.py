"""Verification codes: one comparison per sign-in however many arrive at once, only in the 1:1
chat, and every voided sign-in gives back the grant it had obtained (revoked at the provider)."""

from __future__ import annotations

import asyncio
import random
from functools import partial
from typing import Any

import aiohttp

import messages
from app import WIRING_KEY
from oauth.signin import hash_state
from storage.crypto import TokenCipher
from storage.models import ConnectionStatus, EncryptedTokens
from tests.conftest import TEST_TOKEN_KEY
from tests.support import activities
from tests.support.activities import JANE, Person
from tests.support.data import owner
from tests.support.waiting import eventually
from tests.test_resume_processes import Cluster, cluster, login_urls, ports  # noqa: F401
from tests.test_resume_processes import sign_in as cluster_sign_in
from tests.test_signin_flow import World, world  # noqa: F401 - fixtures

CODES_AT_ONCE = 40
ROUNDS = 5


def wrong_codes(right: str, count: int, rng: random.Random) -> list[str]:
    codes: set[str] = set()
    while len(codes) < count:
        guess = f"{rng.randrange(1_000_000):06d}"
        if guess != right:
            codes.add(guess)
    return sorted(codes)


async def pending_record(world: World) -> dict[str, Any]:  # noqa: F811
    """The newest sign-in record, as stored."""
    cursor = world.bot.database.db["login_states"].find({}).sort([("created_at", -1)]).limit(1)
    [record] = [document async for document in cursor]
    return record


async def userinfo_status(world: World, sealed: dict[str, Any]) -> int:  # noqa: F811
    tokens = TokenCipher([TEST_TOKEN_KEY]).open(EncryptedTokens(**sealed))
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(world.sandbox.userinfo_url, headers=headers) as response,
    ):
        return response.status


async def voided_events(world: World, login_id: str) -> list[dict[str, Any]]:  # noqa: F811
    return [
        event.details
        for event in await world.bot.database.audit.recent(limit=1000)
        if event.action == "signin.voided" and event.details.get("login_id") == login_id
    ]


async def test_forty_codes_at_once_get_one_comparison(world: World) -> None:  # noqa: F811
    """40 codes sent at once for one pending sign-in (the right one among 39 wrong), five times:
    each time exactly one code is compared. Either the right one came first and connected, or
    a wrong one voided the sign-in: the right code then fails, the grant is revoked at the
    provider and the void is audited once."""
    rng = random.Random(20261201)  # noqa: S311 - a fixed seed: the same rounds every run
    connected_rounds = 0
    for _ in range(ROUNDS):
        right = await world.sign_in(JANE, user="jane")
        record = await pending_record(world)
        codes = wrong_codes(right, CODES_AT_ONCE - 1, rng)
        codes.insert(rng.randrange(CODES_AT_ONCE), right)
        await asyncio.gather(
            *(
                world.bot.post(
                    activities.invoke(
                        JANE, world.bot.service_url, "signin/verifyState", {"state": code}
                    )
                )
                for code in codes
            )
        )
        after = await pending_record(world)
        login_id = str(record["_id"])
        if after["step"] == "done":
            voided = await voided_events(world, login_id)
        else:  # the grant is revoked after the answer; its end records the event
            voided = await eventually(partial(voided_events, world, login_id))
        connection = await world.runtime_of(JANE)
        assert connection is not None
        if after["step"] == "done":
            connected_rounds += 1
            assert voided == []
            assert connection.status is ConnectionStatus.CONNECTED
        else:
            assert (after["step"], after["void_reason"]) == ("discarded", "wrong_code")
            assert [v["revocation"] for v in voided] == ["revoked"]
            assert await userinfo_status(world, record["tokens"]) == 401
            assert await world.verify(JANE, right) == [messages.SIGNIN_WRONG_CODE]
            connection = await world.runtime_of(JANE)
            assert connection is not None
            assert connection.status is not ConnectionStatus.CONNECTED
        # Start the next round from a disconnected connection.
        await world.bot.database.connections.disconnect_for_owner(
            connection_id=connection.id, owner=owner(JANE)
        )
    # The right code is compared only when it happens to be the first of the 40 to arrive.
    assert connected_rounds <= 2


async def test_forty_codes_across_two_processes(cluster: Cluster) -> None:  # noqa: F811
    """The same with the 40 codes split over two real bot processes on one database: one
    comparison, one outcome, one audit event at most, and the waiting run ends exactly once."""
    url = cluster.connector.service_url
    await cluster.post(0, activities.message(JANE, url, 'sandbox opportunity "Guarded" 1'))
    [login] = login_urls(cluster.connector)
    right = await cluster_sign_in(cluster, login, on=0)
    rng = random.Random(7)  # noqa: S311 - a fixed seed: the same order every run
    codes = wrong_codes(right, CODES_AT_ONCE - 1, rng)
    codes.insert(rng.randrange(CODES_AT_ONCE), right)
    await asyncio.gather(
        *(
            cluster.post(
                index % 2,
                activities.invoke(JANE, url, "signin/verifyState", {"state": code}),
            )
            for index, code in enumerate(codes)
        )
    )
    [record] = [d async for d in cluster.database.db["login_states"].find({})]

    async def voided() -> list[Any]:
        return [
            e
            for e in await cluster.database.audit.recent(limit=1000)
            if e.action == "signin.voided"
        ]

    events = await voided() if record["step"] == "done" else await eventually(voided)
    [run] = await cluster.database.recipe_runs.for_recipe("sandbox_opportunity")
    created = [o for o in cluster.sandbox.state.opportunities if o["name"] == "Guarded"]
    if record["step"] == "done":
        assert events == [] and run.status == "succeeded" and len(created) == 1
    else:
        assert record["void_reason"] == "wrong_code"
        assert len(events) == 1 and events[0].details["revocation"] == "revoked"
        assert run.status == "cancelled" and created == []


def channel_invoke(person: Person, service_url: str, code: str, kind: str) -> dict[str, Any]:
    activity = activities.invoke(person, service_url, "signin/verifyState", {"state": code})
    activity["conversation"] |= {
        "id": "19:general@thread.tacv2" if kind == "channel" else "19:group@thread.v2",
        "conversationType": kind,
        "isGroup": True,
    }
    return activity


async def test_verify_state_only_counts_in_the_personal_chat(world: World) -> None:  # noqa: F811
    """A `signin/verifyState` from a channel or group chat changes nothing and points to the
    1:1 chat; the same code then works there."""
    code = await world.sign_in(JANE, user="jane")
    for kind in ("channel", "groupChat"):
        world.bot.connector.clear()
        status, _ = await world.bot.post(channel_invoke(JANE, world.bot.service_url, code, kind))
        assert status == 200
        assert [s.text for s in world.bot.connector.sent] == [
            messages.SIGNIN_CODE_PRIVATE_CHAT_ONLY
        ]
        connection = await world.runtime_of(JANE)
        assert connection is not None and connection.status is ConnectionStatus.DISCONNECTED
        assert (await pending_record(world))["step"] == "awaiting_code"
    replies = await world.verify(JANE, code)
    assert replies == [
        messages.SIGNIN_CONNECTED.format(app="Sandbox", account="jane@sandbox.example")
    ]


async def test_cancelled_sign_in_revokes_its_grant(world: World) -> None:  # noqa: F811
    """Cancelled after the provider issued tokens: they are revoked there, and audited."""
    await world.sign_in(JANE, user="jane")
    record = await pending_record(world)
    assert await userinfo_status(world, record["tokens"]) == 200
    assert await world.verify(JANE, "CancelledByUser") == [messages.SIGNIN_CANCELLED]
    # Revoked after the answer; the revocation's end records the event.
    [event] = await eventually(partial(voided_events, world, str(record["_id"])))
    assert await userinfo_status(world, record["tokens"]) == 401
    assert (event["reason"], event["revocation"]) == ("cancelled", "revoked")


async def test_replaced_sign_in_revokes_its_grant(world: World) -> None:  # noqa: F811
    """A new Login card for the same person and app voids the earlier sign-in and its grant."""
    await world.sign_in(JANE, user="jane")
    earlier = await pending_record(world)
    await world.login_card_url(JANE)
    [event] = await eventually(partial(voided_events, world, str(earlier["_id"])))
    assert await userinfo_status(world, earlier["tokens"]) == 401
    assert (event["reason"], event["revocation"]) == ("replaced", "revoked")


async def test_expired_sign_in_revokes_its_grant(world: World) -> None:  # noqa: F811
    """A sign-in left waiting for its code past its ten minutes: the sweeper revokes the grant
    it holds, once, and audits that."""
    code = await world.sign_in(JANE, user="jane")
    record = await pending_record(world)
    await world.bot.database.db["login_states"].update_one(
        {"_id": record["_id"]}, {"$set": {"expires_at": record["created_at"]}}
    )
    resumer = world.bot.client.server.app[WIRING_KEY].resumer
    await resumer.sweep_once()
    await resumer.sweep_once()
    assert await userinfo_status(world, record["tokens"]) == 401
    [event] = await voided_events(world, str(record["_id"]))
    assert (event["reason"], event["revocation"]) == ("expired", "revoked")
    after = await world.bot.database.db["login_states"].find_one({"_id": record["_id"]})
    assert after is not None and after.get("tokens") is None
    assert await world.verify(JANE, code) == []  # nothing pending, nothing connected


async def test_state_is_not_reusable_after_void(world: World) -> None:  # noqa: F811
    """A voided sign-in's link cannot be started again."""
    url = await world.login_card_url(JANE)
    await world.verify(JANE, "CancelledByUser")
    state = url.split("state=", 1)[1]
    record = await world.bot.database.db["login_states"].find_one({"state_hash": hash_state(state)})
    assert record is not None and record["step"] == "discarded"
    async with world.session.get(url, allow_redirects=False) as response:
        assert response.status == 400
