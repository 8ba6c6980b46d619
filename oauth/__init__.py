"""OAuth2 providers the bot can act in, and the sign-in flow that connects people to them."""
