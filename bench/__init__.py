"""Benchmarks run by hand, never by the test suite: `python -m bench.turns` (see its docstring).

`stock_echo_bot` is the baseline: a botbuilder echo bot written the way the SDK samples are.
"""
