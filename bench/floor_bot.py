"""The floor: the least a `personal_connections` turn can cost with this project's libraries.

Not a product: a yardstick for `bench.turns`. It does only what every such turn must do, with
the same parts the product uses and nothing else: aiohttp's server reads the activity, `json`
parses it, one indexed `find` (PyMongo's asynchronous client, made by the product's own
`make_client`, so with the same options) reads the person's runtime connections, a 5-choice
Adaptive Card is built as a dict, and the reply is POSTed on one shared keep-alive
`aiohttp.ClientSession`. No checks, no models, no routing, no audit, no retries. Whatever the
product's turn costs above this is the product's own; what this costs is the machine's and the
libraries'.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from storage.database import make_client

Json = dict[str, Any]

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)
POSTS_KEY = web.AppKey("posts", dict)


def picklist(documents: list[Json]) -> Json:
    """A card with one choice per connection, the product's list at its plainest."""
    choices = [
        {
            "title": f"{d['provider']} · {(d.get('account') or {}).get('display_name', '')}"
            f" · {d['status']}",
            "value": str(d["_id"]),
        }
        for d in documents
    ]
    return {
        "type": "AdaptiveCard",
        "version": "1.5",
        "body": [
            {"type": "TextBlock", "text": "Your connections", "weight": "Bolder"},
            {"type": "Input.ChoiceSet", "id": "connection", "choices": choices},
        ],
        "actions": [{"type": "Action.Execute", "title": "Disconnect", "verb": "disconnect"}],
    }


def create_app(uri: str, database_name: str) -> web.Application:
    client = make_client(uri)
    connections = client[database_name]["connections"]
    posts = {"count": 0}

    async def messages(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        sender, conversation = body["from"], body["conversation"]
        documents = await connections.find(
            {
                "owner.tenant_id": conversation["tenantId"],
                "owner.aad_object_id": sender["aadObjectId"],
                "kind": "runtime",
            }
        ).to_list()
        reply = {
            "type": "message",
            "from": body["recipient"],
            "recipient": sender,
            "conversation": conversation,
            "replyToId": body["id"],
            "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": picklist(documents)}],
        }
        url = (
            f"{body['serviceUrl'].rstrip('/')}/v3/conversations/"
            f"{quote(conversation['id'], safe='')}/activities/{quote(body['id'], safe='')}"
        )
        posts["count"] += 1
        session = request.app[SESSION_KEY]
        async with session.post(url, data=json.dumps(reply).encode(), headers=_HEADERS) as answer:
            await answer.read()
        return web.Response(status=200)

    async def session_context(app: web.Application) -> Any:
        app[SESSION_KEY] = aiohttp.ClientSession()
        yield
        await app[SESSION_KEY].close()
        await client.close()

    app = web.Application()
    app.cleanup_ctx.append(session_context)
    app.router.add_post("/api/messages", messages)
    app[POSTS_KEY] = posts
    return app
