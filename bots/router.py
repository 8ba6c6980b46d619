"""A small router: command words, card action verbs and invoke names mapped to handlers.

Routes are registered once at start. Command words match case-insensitively on the whole typed
text; later slices add matchers (recipes) after the built-in commands, which always win.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

CommandHandler = Callable[..., Awaitable[None]]
VerbHandler = Callable[..., Awaitable[dict[str, Any] | str]]
InvokeHandler = Callable[..., Awaitable[None]]
# Tried in order for text that is no command; returns True when it handled the message.
TextMatcher = Callable[..., Awaitable[bool]]


@dataclass
class Router:
    commands: dict[str, CommandHandler] = field(default_factory=dict)
    verbs: dict[str, VerbHandler] = field(default_factory=dict)
    invokes: dict[str, InvokeHandler] = field(default_factory=dict)
    text_matchers: list[TextMatcher] = field(default_factory=list)

    def command(self, *words: str, handler: CommandHandler) -> None:
        for word in words:
            key = word.casefold()
            if key in self.commands:
                raise ValueError(f"the command {word!r} is registered twice")
            self.commands[key] = handler

    def verb(self, verb: str, handler: VerbHandler) -> None:
        if verb in self.verbs:
            raise ValueError(f"the card verb {verb!r} is registered twice")
        self.verbs[verb] = handler

    def invoke(self, name: str, handler: InvokeHandler) -> None:
        if name in self.invokes:
            raise ValueError(f"the invoke {name!r} is registered twice")
        self.invokes[name] = handler

    def text(self, matcher: TextMatcher) -> None:
        self.text_matchers.append(matcher)

    def match_command(self, text: str) -> CommandHandler | None:
        return self.commands.get(text.strip().casefold())

    def match_verb(self, verb: str) -> VerbHandler | None:
        return self.verbs.get(verb)
