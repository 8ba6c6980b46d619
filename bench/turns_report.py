"""What `bench.turns` prints: each measured pass, the ratios to the stock bot, and the targets.

A pass is one closed-loop load run against one bot process (`Measured`); its figures per turn
are the counters' and CPU seconds' growth over the measured window divided by the turns served
in that time (`turns_since_window`: the window's turns and the tail still in flight when it
closed, so the counters, the CPU and the turns cover the same seconds).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.turns_procs import OTHERS

PROFILE_RATE = 250  # py-spy samples per second
# CPU used by processes outside the run, in % of one core, above which figures are refused.
OTHERS_WARNING_PERCENT = 15


@dataclass
class LoadResult:
    """What the load generator saw; latencies are of turns that completed in the window."""

    window_s: float
    latencies_ms: list[float]
    errors: Counter[str]
    ok_total: int  # warm-up and the tail included: every turn the bot served in the pass
    ok_since_window: int  # served from the window's start on, the tail included

    @property
    def turns_per_s(self) -> float:
        return len(self.latencies_ms) / self.window_s

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return math.nan
        return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


@dataclass
class Measured:
    """One measured pass: the load's figures, CPU seconds per group of processes, and the
    counters' growth over the window (None: not counted in that process)."""

    key: str
    title: str
    concurrency: int
    load: LoadResult
    wall_s: float
    cpu_s: dict[str, float]
    bot_groups: tuple[str, ...]
    clients: int | None = None
    client_kind: str = ""
    clients_in_process: int | None = None
    posts: int | None = None
    token_requests: int | None = None  # asked by the bot's BotTokens (None: authentication off)
    commands: Counter[str] | None = None
    replies: Counter[str] = field(default_factory=Counter)
    sandbox_actions: int | None = None
    issuer_token_requests: int | None = None  # at the identity provider, the whole pass
    notes: list[str] = field(default_factory=list)
    profile: Path | None = None

    @property
    def turns(self) -> int:
        """Turns the counters and CPU seconds are divided by."""
        return self.load.ok_since_window

    def per_turn(self, value: float | None) -> float:
        if value is None or not self.turns:
            return math.nan
        return value / self.turns

    @property
    def bot_cpu_ms(self) -> float:
        """The bot's CPU milliseconds per turn (all its processes with --workers)."""
        used = [self.cpu_s.get(group, math.nan) for group in self.bot_groups]
        return 1000 * self.per_turn(sum(used))

    def percent(self, group: str) -> float:
        return 100 * self.cpu_s.get(group, math.nan) / self.wall_s if self.wall_s else math.nan

    @property
    def others_percent(self) -> float:
        return self.percent(OTHERS)

    @property
    def busy(self) -> bool:
        return self.others_percent > OTHERS_WARNING_PERCENT


@dataclass(frozen=True)
class Verdict:
    label: str
    value: str
    passed: bool | None  # None: not measured in this run


# --------------------------------------------------------------------------- one pass


def _count(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def pass_lines(run: Measured) -> list[str]:
    load = run.load
    errors = sum(load.errors.values())
    lines = [
        f"[{run.key}] {run.title}" + ("   UNRELIABLE (machine busy)" if run.busy else ""),
        f"  turns/s {load.turns_per_s:8.1f}   p50 {load.percentile(0.50):7.1f} ms   "
        f"p99 {load.percentile(0.99):7.1f} ms   "
        f"({len(load.latencies_ms)} turns in {load.window_s:g} s, {errors} errors)",
    ]
    if errors:
        lines.append(f"  errors: {dict(load.errors)}")
    lines.append(f"  per turn ({run.turns} turns served in the window, its tail included):")
    lines.append(f"    CPU of the bot            {run.bot_cpu_ms:.3f} ms")
    lines += _counter_lines(run)
    replies = ", ".join(f"{count} {kind}" for kind, count in sorted(run.replies.items()))
    lines.append(f"  replies received by the connector: {replies or 'none'}")
    cpu = ", ".join(
        f"{name} {run.percent(name):.0f}%"
        for name in run.cpu_s
        if not math.isnan(run.percent(name))
    )
    lines.append(f"  CPU used in the measured window (100% = one core): {cpu}")
    if run.busy:
        lines.append(
            f"  processes outside the run took {run.others_percent:.0f}% of a core meanwhile "
            f"(limit {OTHERS_WARNING_PERCENT}%)"
        )
    lines += [f"  {note}" for note in run.notes]
    return lines


def _counter_lines(run: Measured) -> list[str]:
    clients = run.per_turn(run.clients)
    in_process = "" if run.clients_in_process is None else f"; {run.clients_in_process} in all"
    lines = [
        f"    connector clients built   {_count(clients)}"
        + (f"   ({run.client_kind}{in_process})" if run.client_kind else "   (not counted)"),
        f"    connector posts           {_count(run.per_turn(run.posts))}",
    ]
    if run.token_requests is None:
        lines.append("    token requests            0       (authentication off)")
    else:
        lines.append(f"    token requests            {_count(run.per_turn(run.token_requests))}")
    if run.commands is None:
        lines.append("    database round trips      n/a     (not counted in this process)")
    else:
        by_name = ", ".join(
            f"{name} {run.per_turn(count):.3f}" for name, count in run.commands.most_common()
        )
        total = run.per_turn(sum(run.commands.values()))
        lines.append(f"    database round trips      {_count(total)}   ({by_name or 'none'})")
    if run.sandbox_actions is not None:
        lines.append(f"    calls to the sandbox API  {_count(run.per_turn(run.sandbox_actions))}")
    if run.issuer_token_requests is not None:
        issued = run.issuer_token_requests
        lines.append(
            f"  token requests at the issuer: {issued} in the whole pass of {run.load.ok_total} "
            f"turns by one bot process ({_count(issued / max(run.load.ok_total, 1))} per turn)"
        )
    return lines


# --------------------------------------------------------------------------- ratios, targets


def _ratio(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator) or not denominator:
        return math.nan
    return numerator / denominator


def _times(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}×"


def _row(run: Measured, other: Measured, cpu: float) -> str:
    turns = _ratio(run.load.turns_per_s, other.load.turns_per_s)
    p99 = _ratio(run.load.percentile(0.99), other.load.percentile(0.99))
    label = f"[{run.key}] vs [{other.key}]"
    return f"{label:<46}{_times(turns):>9}{_times(p99):>9}{_times(cpu):>22}"


def ratio_lines(runs: dict[str, Measured], stock_at: Callable[[int], Measured | None]) -> list[str]:
    """Each pass against the stock echo bot at the same concurrency, from this run."""
    header = f"{'scenario':<46}{'turns/s':>9}{'p99':>9}{'CPU/turn stock/ours':>22}"
    lines = ["Ratios against the stock echo bot (this run, same concurrency):", header]
    for run in runs.values():
        stock = stock_at(run.concurrency)
        if stock is not None and not run.key.startswith("stock"):
            lines.append(_row(run, stock, _ratio(stock.bot_cpu_ms, run.bot_cpu_ms)))
    if len(lines) == 2:
        lines.append("(nothing to compare: no stock bot at the same concurrency in this run)")
    return lines


def floor_lines(runs: dict[str, Measured]) -> list[str]:
    """This bot's passes against the floor bot (bench/floor_bot.py) at the same concurrency:
    what the product's own code adds to the least such a turn can cost on this machine."""
    header = f"{'scenario':<46}{'turns/s':>9}{'p99':>9}{'CPU/turn ours/floor':>22}"
    lines = ["Against the floor bot (this run, same concurrency):", header]
    for run in runs.values():
        floor = runs.get(f"floor@{run.concurrency}")
        if floor is not None and not run.key.startswith(("stock", "floor", "workers")):
            lines.append(_row(run, floor, _ratio(run.bot_cpu_ms, floor.bot_cpu_ms)))
    return lines if len(lines) > 2 else []


def _check(
    label: str, value: float, limit: float, *, at_least: bool, unit: str = "×", also: str = ""
) -> Verdict:
    if math.isnan(value):
        return Verdict(label, "not measured", None)
    passed = value >= limit if at_least else value <= limit
    shown = f"{value:.1f} ms" if unit == " ms" else f"{value:.2f}×"
    return Verdict(label, shown + also, passed)


def _floor(value: float, unit: str = "×") -> str:
    """The same figure for the floor bot of this run: what this machine allows at best."""
    if math.isnan(value):
        return ""
    return f" (floor bot {value:.1f} ms)" if unit == " ms" else f" (floor bot {value:.2f}×)"


def verdicts(
    runs: dict[str, Measured], low: int, high: int, others: tuple[int, int]
) -> list[Verdict]:
    """The figures issue #14 demands, each PASS, FAIL or SKIP (not measured)."""

    def get(key: str) -> Measured | None:
        return runs.get(key)

    def cpu_less(key: str) -> float:
        run, stock = get(key), get(f"stock@{high}")
        return _ratio(stock.bot_cpu_ms, run.bot_cpu_ms) if run and stock else math.nan

    def figure(key: str, read: Callable[[Measured], float]) -> float:
        run = get(key)
        return read(run) if run else math.nan

    ours, stock, floor = get(f"ours@{high}"), get(f"stock@{high}"), get(f"floor@{high}")
    turns = _ratio(*(r.load.turns_per_s if r else math.nan for r in (ours, stock)))
    p99 = _ratio(*(r.load.percentile(0.99) if r else math.nan for r in (ours, stock)))
    floor_turns = _ratio(*(r.load.turns_per_s if r else math.nan for r in (floor, stock)))
    floor_p99 = _ratio(*(r.load.percentile(0.99) if r else math.nan for r in (floor, stock)))
    floor_p99_low = figure(f"floor@{low}", lambda r: r.load.percentile(0.99))
    workers = get("workers")
    one = ours.load.turns_per_s if ours else math.nan
    small, large = get("list-small"), get("list-large")
    p50_list = _ratio(*(r.load.percentile(0.5) if r else math.nan for r in (large, small)))
    p99_list = _ratio(*(r.load.percentile(0.99) if r else math.nan for r in (large, small)))
    found = [
        _check(
            "CPU per turn, personal_connections ≥10× less than stock",
            cpu_less(f"ours@{high}"),
            10,
            at_least=True,
            also=_floor(cpu_less(f"floor@{high}")),
        ),
        _check(
            "CPU per turn, card action ≥10× less than stock",
            cpu_less("card"),
            10,
            at_least=True,
            also=_floor(cpu_less(f"floor@{high}")),
        ),
        _check(
            f"turns/s at {high}, personal_connections ≥8× stock",
            turns,
            8,
            at_least=True,
            also=_floor(floor_turns),
        ),
        _check(
            f"p99 at {high}, personal_connections ≤0.15× stock's",
            p99,
            0.15,
            at_least=False,
            also=_floor(floor_p99),
        ),
        _check(
            f"p99 at {low}, personal_connections ≤20 ms",
            figure(f"ours@{low}", lambda r: r.load.percentile(0.99)),
            20,
            at_least=False,
            unit=" ms",
            also=_floor(floor_p99_low, unit=" ms"),
        ),
        _check(
            "turns/s, --workers 2 ≥1.4× one worker (personal_connections, same run)",
            _ratio(workers.load.turns_per_s, one) if workers else math.nan,
            1.4,
            at_least=True,
        ),
        _check(
            f"list latency p50 at {low}, {others[1]:,} others ≤1.2× {others[0]:,} others",
            p50_list,
            1.2,
            at_least=False,
            also=f" (p99 {_times(p99_list)})",
        ),
    ]
    auth = get("auth")
    issuer = auth.issuer_token_requests if auth else None
    found.append(
        Verdict("token requests at the issuer: 1 per bot process", "not measured", None)
        if issuer is None
        else Verdict(
            "token requests at the issuer: 1 per bot process", f"{issuer} in the run", issuer == 1
        )
    )
    failed = [run.key for run in runs.values() if sum(run.load.errors.values())]
    found.append(
        Verdict(
            "every turn answered as expected (no errors)",
            ", ".join(failed) or "0 errors",
            not failed,
        )
    )
    return found


def verdict_lines(found: Iterable[Verdict]) -> list[str]:
    marks = {True: "PASS", False: "FAIL", None: "SKIP"}
    return [f"  {marks[v.passed]}  {v.label}: {v.value}" for v in found]


# --------------------------------------------------------------------------- profiles


# Where a frame's file lives, to attribute CPU to a library (first match wins).
AREAS = (
    ("msrest/serialization", "msrest serialization (activities in and out)"),
    ("msrest/", "msrest (clients, pipeline, retry policy)"),
    ("requests/", "requests + urllib3 + http.client (reply POST)"),
    ("urllib3/", "requests + urllib3 + http.client (reply POST)"),
    ("http/client", "requests + urllib3 + http.client (reply POST)"),
    ("socket.py", "socket (any caller)"),
    ("pymongo/", "pymongo + bson"),
    ("bson/", "pymongo + bson"),
    ("pydantic", "pydantic"),
    ("aiohttp/", "aiohttp"),
    ("asyncio/", "asyncio"),
    ("selectors.py", "asyncio"),
    ("concurrent/", "thread pool"),
    ("threading.py", "thread pool"),
    ("botbuilder/", "botbuilder"),
    ("core/", "botbuilder"),
    ("botframework/", "botframework connector"),
    ("connector/", "botframework connector"),
    ("json/", "json"),
)
PROJECT_FILES = ("bots/", "cards/", "connections/", "storage/", "oauth/", "app.py", "bench/")

# Stages of a turn, each the inclusive time of one function (a frame name prefix).
STAGES = (
    ("ConnectorClient built", "ConnectorClient.__init__ (connector/aio/"),
    ("TokenApiClient built", "TokenApiClient.__init__ (connector/token_api/aio/"),
    ("  of which msrest ClientRetryPolicy built", "ClientRetryPolicy.__init__ (msrest/"),
    ("incoming activity deserialized (msrest)", "Model.deserialize (msrest/"),
    ("reply serialized (msrest Serializer.body)", "Serializer.body (msrest/"),
    ("reply POSTed with requests (thread pool)", "Session.request (requests/"),
    ("reply POSTed by bots/connector.py (aiohttp)", "Connector._post (bots/connector"),
    ("connections listed (pymongo + pydantic)", "ConnectionsService.list_views ("),
    ("picklist card built", "connections_picklist (cards/"),
)


def _frame_location(frame: str) -> str:
    """ "send (requests/sessions.py:701)" -> "requests/sessions.py" """
    return frame.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0]


def _frame_area(frame: str) -> str:
    location = _frame_location(frame)
    for needle, area in AREAS:
        if needle in location:
            return area
    if location.startswith(PROJECT_FILES):
        return "this project's code"
    return f"other ({location.split('/')[0]})"


def _strip_line_number(frame: str) -> str:
    # One row per function, not per line.
    head, _, _ = frame.rpartition(" (")
    return f"{head} ({_frame_location(frame)})" if head else frame


def summarize_profile(path: Path, duration_s: float, top: int = 10) -> str:
    """Where the bot's CPU went, from py-spy's collapsed stacks (GIL holder only)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return "  (no profile written: is py-spy allowed to attach here?)"
    total = 0
    by_area: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_strip_line_number(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += count
        by_area[_frame_area(frames[-1])] += count
        by_function[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "  (no samples)"
    expected = duration_s * PROFILE_RATE
    out = [
        f"  {total} samples with the GIL held (of ~{expected:.0f} taken: the GIL was busy "
        f"{100 * total / expected:.0f}% of the window). Shares below are of those samples.",
        "  Stages of a turn (inclusive):",
    ]
    for label, prefix in STAGES:
        count = sum(n for frame, n in inclusive.items() if frame.startswith(prefix))
        out.append(f"    {100 * count / total:5.1f}%  {label}")
    out.append("  Self time by library:")
    out += [f"    {100 * n / total:5.1f}%  {area}" for area, n in by_area.most_common(top)]
    out.append("  Self time by function:")
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in by_function.most_common(top)]
    return "\n".join(out)
