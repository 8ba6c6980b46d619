"""`python -m bench.turns` runs end to end at tiny sizes and prints every scenario and the ratios.

The figures are not judged (one second per pass, on a machine other tests keep busy): this
checks that every pass runs against its real processes and reports sane numbers, that the
counters say what the code does (the stock bot builds a ConnectorClient per turn, this bot no
session per turn, an invoke posts nothing, the issuer is asked for one token in all), and that a
disturbed window is refused unless --allow-busy.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.turns import Rig, workers_unavailable
from bench.turns_procs import OTHERS
from bench.turns_report import LoadResult, Measured
from tests.conftest import EXTERNAL_MONGODB_URI

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240
PASSES = ("stock@16", "stock@4", "floor@16", "floor@4", "ours@16", "ours@4", "card", "recipe")
PASSES += ("workers", "list-small", "list-large", "auth")
COUNTERS = ("connector clients built", "connector posts", "token requests", "database round trips")


def run_bench(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("MONGODB_URI", None)
    if EXTERNAL_MONGODB_URI:
        env["MONGODB_URI"] = EXTERNAL_MONGODB_URI
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    command = [sys.executable, "-m", "bench.turns", "--duration", "1", "--warmup", "0.5"]
    command += ["--others-small", "20", "--others-large", "200", "--allow-busy"]
    return subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT_S,
        check=False,
    )


def blocks(output: str) -> dict[str, str]:
    """Each pass's printed block, by its key (they come before the ratios)."""
    found: dict[str, str] = {}
    passes = output.split("Ratios against the stock echo bot", 1)[0]
    for block in re.split(r"\n(?=\[)", passes):
        header = re.match(r"\[([\w@-]+)\] ", block)
        if header and "turns/s" in block:
            found[header.group(1)] = block
    return found


def per_turn(block: str, counter: str) -> float:
    match = re.search(rf"^    {counter}\s+(\d+\.\d+|0 |n/a)", block, re.M)
    assert match, f"no {counter!r} in:\n{block}"
    value = match.group(1).strip()
    return float("nan") if value == "n/a" else float(value)


def test_bench_turns_runs_every_scenario_and_prints_the_ratios(tmp_path: Path) -> None:
    completed = run_bench(tmp_path)
    output = completed.stdout + completed.stderr
    assert completed.returncode in (0, 1), output  # 1: a target failed, never 2 or 3
    assert "Traceback" not in output, output
    found = blocks(completed.stdout)
    expected = [key for key in PASSES if key != "workers" or workers_unavailable() is None]
    assert sorted(found) == sorted(expected), output
    if workers_unavailable() is not None:
        assert "[workers] skipped:" in completed.stdout, output

    for key, block in found.items():
        turns = re.search(r"turns/s\s+([\d.]+)\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms", block)
        assert turns and float(turns.group(1)) > 0, block
        assert 0 < float(turns.group(2)) <= float(turns.group(3)), block
        assert re.search(r"\(\d+ turns in 1 s, 0 errors\)", block), block
        cpu = re.search(r"CPU of the bot\s+(\d+\.\d+) ms", block)
        assert cpu and float(cpu.group(1)) > 0, block
        for counter in COUNTERS:
            per_turn(block, counter)
        if key not in ("card", "recipe"):  # a slow recipe run is acknowledged first
            assert per_turn(block, "connector posts") == 1.0, block

    for key in ("stock@16", "stock@4"):
        assert "SDK ConnectorClient" in found[key]
        assert per_turn(found[key], "connector clients built") == 1.0, found[key]
        assert per_turn(found[key], "database round trips") == 0.0, found[key]
    for key in ("ours@16", "ours@4", "card", "recipe", "list-small", "list-large", "auth"):
        assert "aiohttp ClientSession" in found[key], found[key]
        assert per_turn(found[key], "connector clients built") == 0.0, found[key]
        assert per_turn(found[key], "database round trips") >= 1.0, found[key]
    for key in ("floor@16", "floor@4"):
        assert "aiohttp ClientSession" in found[key], found[key]
        assert per_turn(found[key], "connector clients built") == 0.0, found[key]
        assert per_turn(found[key], "database round trips") == 1.0, found[key]
        assert "Adaptive Card with 5 choices" in found[key]
    assert "Adaptive Card with 5 choices" in found["ours@16"]
    assert per_turn(found["card"], "connector posts") == 0.0
    assert "replies received by the connector: none" in found["card"]
    assert "Created in Sandbox as omar@sandbox.example" in found["recipe"]
    assert per_turn(found["recipe"], "calls to the sandbox API") == 1.0
    assert per_turn(found["recipe"], "connector posts") >= 1.0
    assert re.search(r"token requests at the issuer: 1 in the whole pass", found["auth"])
    assert per_turn(found["auth"], "token requests") == 0.0
    if "workers" in found:
        assert re.search(r"2 workers: [\d.]+ turns/s per worker; [\d.]+× the one-worker", output)

    table = completed.stdout.split("Ratios against the stock echo bot", 1)[-1]
    for key in expected:
        if not key.startswith("stock"):
            row = re.search(
                rf"^\[{key}\] vs \[stock@\d+\]\s+([\d.]+)×\s+([\d.]+)×\s+([\d.]+)×", table, re.M
            )
            assert row and all(float(value) > 0 for value in row.groups()), table
    against = completed.stdout.split("Against the floor bot", 1)[-1]
    for key in ("ours@16", "ours@4", "card", "list-small", "list-large", "auth"):
        floor = "floor@4" if key in ("ours@4", "list-small", "list-large") else "floor@16"
        row = re.search(
            rf"^\[{key}\] vs \[{floor}\]\s+([\d.]+)×\s+([\d.]+)×\s+([\d.]+)×", against, re.M
        )
        assert row and all(float(value) > 0 for value in row.groups()), against
    targets = re.findall(r"^  (PASS|FAIL|SKIP)  (.+): (.+)$", completed.stdout, re.M)
    beside_floor = re.findall(
        r"^  \w{4}  (CPU per turn.+|turns/s at.+|p99 at.+): (.+)$", completed.stdout, re.M
    )
    assert len(beside_floor) == 5, completed.stdout
    for label, value in beside_floor:
        assert re.search(r"\(floor bot [\d.]+(×| ms)\)$", value), (label, value)
    assert len(targets) == 9, completed.stdout
    assert ("PASS", "token requests at the issuer: 1 per bot process", "1 in the run") in targets
    assert completed.stdout.count("SKIP") == (0 if workers_unavailable() is None else 1)
    assert not list(tmp_path.iterdir()), "the benchmark left files in its working directory"


def measured(others_s: float) -> Measured:
    load = LoadResult(1.0, [1.0], Counter(), 1, 1)
    return Measured("ours@16", "t", 16, load, 1.0, {"bot": 0.5, OTHERS: others_s}, ("bot",))


@pytest.mark.parametrize(
    ("others_s", "allow_busy", "refused"),
    [(0.1, False, False), (0.2, False, True), (0.2, True, False)],
)
def test_a_disturbed_window_is_refused_unless_allowed(
    others_s: float, allow_busy: bool, refused: bool
) -> None:
    """More than 15% of a core taken by other processes in a window: no figures, unless
    --allow-busy (then they are marked UNRELIABLE)."""

    plan = SimpleNamespace(allow_busy=allow_busy)
    rig = Rig(plan, None, None, "")  # type: ignore[arg-type]
    rig.results["ours@16"] = measured(others_s)
    refusal = rig.busy_refusal()
    assert (refusal is not None) == refused
    if refused:
        assert refusal is not None and "20% of a core" in refusal and "--allow-busy" in refusal
    assert rig.results["ours@16"].busy == (others_s > 0.15)
