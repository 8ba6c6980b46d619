"""The baseline: a stock botbuilder echo bot, written the way the SDK's samples write it.

Same parts as the `02.echo-bot` sample: `CloudAdapter` with
`ConfigurationBotFrameworkAuthentication` (empty app id, so authentication is off), an
`ActivityHandler` that answers `Echo: <text>`, the sample's error handler and error middleware,
and `adapter.process(req, bot)` as the aiohttp handler. Nothing is cached or tuned: that is the
point of a baseline. The only departure is a `create_app()` factory instead of module globals,
so that the benchmark can import this module and count what the SDK builds before the adapter
exists. `python -m bench.stock_echo_bot` serves it on http://localhost:3978/api/messages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from botbuilder.core import ActivityHandler, MessageFactory, TurnContext
from botbuilder.core.integration import aiohttp_error_middleware
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
)
from botbuilder.schema import ChannelAccount

log = logging.getLogger(__name__)


@dataclass
class DefaultConfig:
    """The sample's `config.py`, with no credentials: local use, authentication off."""

    PORT: int = 3978
    APP_ID: str = ""
    APP_PASSWORD: str = ""
    APP_TYPE: str = "MultiTenant"
    APP_TENANTID: str = ""


class EchoBot(ActivityHandler):
    async def on_members_added_activity(
        self, members_added: list[ChannelAccount], turn_context: TurnContext
    ) -> None:
        for member in members_added:
            if member.id != turn_context.activity.recipient.id:
                await turn_context.send_activity("Hello and welcome!")

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await turn_context.send_activity(MessageFactory.text(f"Echo: {turn_context.activity.text}"))


async def on_error(context: TurnContext, error: Exception) -> None:
    # The sample prints the traceback and tells the user; logging keeps the benchmark quiet.
    log.error("on_turn_error", exc_info=error)
    await context.send_activity("The bot encountered an error or bug.")


def create_app(config: DefaultConfig | None = None) -> web.Application:
    """The sample's application: adapter, bot and the `/api/messages` route."""
    config = config or DefaultConfig()
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(config))
    adapter.on_turn_error = on_error
    bot = EchoBot()

    async def messages(req: web.Request) -> web.Response:
        # The SDK types this Optional (websocket upgrades); a POST always gets a Response.
        return await adapter.process(req, bot)  # type: ignore[return-value]

    app = web.Application(middlewares=[aiohttp_error_middleware])
    app.router.add_post("/api/messages", messages)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="localhost", port=DefaultConfig.PORT)
