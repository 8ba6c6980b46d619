"""Benchmarks run by hand: `python -m bench.turns`, `python -m bench.console` and
`python -m bench.soak` (see their docstrings). The test suite runs each once at tiny sizes, to
keep them working.

`stock_echo_bot` is the baseline: a botbuilder echo bot written the way the SDK samples are.
"""
