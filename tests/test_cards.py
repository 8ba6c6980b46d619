"""Card builders are pure: checked on their JSON and against the Adaptive Card 1.5 schema."""

from __future__ import annotations

import json

import pytest

import messages
from cards import verbs
from cards.connections import PAGE_SIZE, confirm_delete, connections_picklist, message_card
from cards.help import help_card
from connections.views import ConnectionView
from tests.support.card_schema import assert_valid_card


def views(count: int, status: str = "connected") -> list[ConnectionView]:
    return [
        ConnectionView(
            id=f"{number:024x}",
            app_name="Salesforce",
            account=f"someone.with.a.long.name.{number:03d}@contoso-enterprises.example",
            status=status,
        )
        for number in range(count)
    ]


@pytest.mark.parametrize("count", [0, 1, PAGE_SIZE, PAGE_SIZE + 1, 50])
def test_picklist_validates_on_every_page(count: int) -> None:
    """Every page of the picklist is a valid Adaptive Card 1.5."""
    for page in range(max(1, -(-count // PAGE_SIZE))):
        assert_valid_card(connections_picklist(views(count), page=page, result="Done."))


def test_choice_labels_name_app_account_and_status() -> None:
    """Each choice reads "App — account (Status)"; statuses use words people know."""
    listed = [
        ConnectionView(id="a" * 24, app_name="Box", account="jane@contoso.com", status="connected"),
        ConnectionView(id="b" * 24, app_name="Box", account="j@x", status="disconnected"),
        ConnectionView(id="c" * 24, app_name="Box", account="j@y", status="needs_reauth"),
    ]
    card = connections_picklist(listed)
    [choice_set] = [e for e in card["body"] if e["type"] == "Input.ChoiceSet"]
    assert choice_set["style"] == "compact"
    assert choice_set["id"] == verbs.CONNECTION_INPUT
    assert [c["title"] for c in choice_set["choices"]] == [
        "Box — jane@contoso.com (Connected)",
        "Box — j@x (Disconnected)",
        "Box — j@y (Needs sign-in)",
    ]
    assert [c["value"] for c in choice_set["choices"]] == ["a" * 24, "b" * 24, "c" * 24]


def test_actions_are_execute_with_submit_fallback() -> None:
    """Disconnect and Delete are Action.Execute with an Action.Submit fallback carrying the verb."""
    card = connections_picklist(views(3))
    by_title = {action["title"]: action for action in card["actions"]}
    for title, verb in (("Disconnect", verbs.DISCONNECT), ("Delete", verbs.DELETE)):
        action = by_title[title]
        assert action["type"] == "Action.Execute"
        assert action["verb"] == verb
        assert action["fallback"]["type"] == "Action.Submit"
        assert action["fallback"]["data"][verbs.VERB_KEY] == verb


def test_fifty_connections_stay_small() -> None:
    """The list card for 50 connections stays under 20 KB."""
    card = connections_picklist(views(50))
    assert len(json.dumps(card).encode()) < 20_000


def test_empty_state_is_one_clear_sentence() -> None:
    """No connections: the card explains where they come from and offers no buttons."""
    card = connections_picklist([])
    assert messages.CONNECTIONS_EMPTY in [e.get("text") for e in card["body"]]
    assert "actions" not in card


def test_paging_controls() -> None:
    """Next appears while more follow; Previous after the first page; pages are clamped."""
    card = connections_picklist(views(25), page=0)
    assert [a["title"] for a in card["actions"]] == ["Disconnect", "Delete", "Next"]
    last = connections_picklist(views(25), page=7)
    assert [a["title"] for a in last["actions"]] == ["Disconnect", "Delete", "Previous"]
    assert "Showing 21–25 of 25" in json.dumps(last, ensure_ascii=False)


def test_confirm_delete_help_and_message_cards_validate() -> None:
    """The confirmation, help and message cards are valid Adaptive Cards 1.5."""
    confirm = confirm_delete(views(1)[0], page=0)
    assert_valid_card(confirm)
    assert [a["title"] for a in confirm["actions"]] == ["Confirm", "Cancel"]
    assert confirm["actions"][0]["data"][verbs.CONNECTION_INPUT] == views(1)[0].id
    assert_valid_card(help_card())
    assert_valid_card(message_card("Hello.", heading="Title"))


def test_cards_never_carry_tokens() -> None:
    """Views have no token fields, so no card can show one."""
    assert set(ConnectionView.__dataclass_fields__) == {
        "id",
        "app_name",
        "account",
        "status",
        "since",
    }


def test_recipe_cards_validate_and_credit_the_account() -> None:
    """Result, waiting and problem cards are valid; the result names whom it was credited to."""
    from cards.recipes import recipe_problem, recipe_result, recipe_waiting

    result = recipe_result(
        recipe_name="Create opportunity",
        verb="Created",
        app_name="Salesforce",
        account="jane@contoso.com",
        fields={"Id": "006xx"},
        link="https://acme.my.salesforce.com/006xx",
    )
    assert_valid_card(result)
    assert "Created in Salesforce as jane@contoso.com" in json.dumps(result)
    assert result["actions"][0]["type"] == "Action.OpenUrl"
    assert_valid_card(recipe_waiting(recipe_name="X", message="Sign in first."))
    assert_valid_card(recipe_problem(recipe_name="X", message="It failed."))
