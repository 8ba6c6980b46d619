"""The Slack surface: the same connections, sign-in and recipes as Teams, through Bolt."""
