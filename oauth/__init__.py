"""OAuth2 providers the bot can act in, and (later) the sign-in flow that connects people to them."""
