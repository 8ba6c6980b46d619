"""Operator tools: the command line for connections (and, later, the admin web page)."""
