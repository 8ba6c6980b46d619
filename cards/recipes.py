"""Result cards of recipe runs: what was done, and as whom.

`run_result_card(result)` renders a run's outcome (`recipes.results.RunResult`, plain data);
the builders below are its parts.
"""

from __future__ import annotations

from collections.abc import Mapping

import messages
from cards.adaptive import Card, Element, card, notice, text, title
from recipes.results import Outcome, RunResult


def run_result_card(result: RunResult) -> Card | None:
    """The card that shows a run's outcome; None for a repeated delivery (nothing to show)."""
    if result.outcome is Outcome.DUPLICATE:
        return None
    if result.outcome is Outcome.SUCCEEDED:
        return recipe_result(
            recipe_name=result.recipe_name,
            verb=result.verb,
            app_name=result.app_name,
            account=result.acted_as,
            fields=result.fields,
            link=result.link,
            summary=result.summary,
        )
    message = result.message or messages.TURN_FAILED
    if result.outcome is Outcome.SIGN_IN_NEEDED:
        return recipe_waiting(recipe_name=result.recipe_name, message=message)
    return recipe_problem(recipe_name=result.recipe_name, message=message)


def recipe_result(
    *,
    recipe_name: str,
    verb: str,
    app_name: str,
    account: str,
    fields: Mapping[str, str],
    link: str | None = None,
    summary: str | None = None,
) -> Card:
    """A successful run, credited to the account it acted as ("Created in Salesforce as …")."""
    body: list[Element] = [
        title(recipe_name),
        notice(messages.RECIPE_CREDITED.format(verb=verb, app=app_name, account=account)),
    ]
    if summary:
        body.append(text(summary))
    if fields:
        body.append(
            {
                "type": "FactSet",
                "facts": [{"title": label, "value": value} for label, value in fields.items()],
            }
        )
    actions = [
        {
            "type": "Action.OpenUrl",
            "title": messages.BUTTON_OPEN_IN_APP.format(app=app_name),
            "url": link,
        }
    ]
    return card(body, actions if link else None)


def recipe_waiting(*, recipe_name: str, message: str) -> Card:
    """A run waiting for its invoker to sign in; it carries on by itself afterwards."""
    return card([title(messages.RECIPE_WAITING_TITLE.format(recipe=recipe_name)), text(message)])


def recipe_problem(*, recipe_name: str, message: str) -> Card:
    """A run that did not complete, with a sentence saying why (never a token or a trace)."""
    return card(
        [
            title(messages.RECIPE_FAILED_TITLE.format(recipe=recipe_name)),
            notice(message, attention=True),
        ]
    )
