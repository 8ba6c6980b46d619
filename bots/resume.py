"""Kept only so `from bots.resume import RunResumer` (bots/signin_handlers.py) still works.

The resumer lives in `recipes.resume`, free of Teams; its Teams side (posting a result into a
conversation) is `bots.recipe_handlers.conversation_reporter`.
"""

from recipes.resume import RunResumer

__all__ = ["RunResumer"]
