"""The admin console: "Tools > Runtime user connections" on the web, under /admin/.

Server-rendered pages (aiohttp-jinja2, autoescaped) served by the bot's own aiohttp app. An
administrator signs in with msal (Entra ID, or any OpenID Connect issuer such as the sandbox's),
or on loopback with a one-time link when neither is configured; sessions are kept on the server
(storage/admin_sessions.py) and every page and action checks its privilege
(storage/privileges.py) on the server. Changes go through the same connections service as the
chat, so they are revoked at the provider and audited with the administrator's identity.
"""
