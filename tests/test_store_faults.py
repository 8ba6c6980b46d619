"""The store stopped (SIGSTOP) and killed (SIGKILL) under load, two bot processes on it.

`python -m bench.soak --store-faults` runs 8 clients for 36 s over two real `python app.py`
processes sharing the embedded store (on disk, supervised by the bench process), stops the
store for 6 s at 12 s and kills it at 24 s. It exits 0 only when every request was answered
within 5 s (the normal answer, or "try again in a moment"), the store was restarted, no
connection record is half-written, every outbox is drained and the audit log holds exactly one
event per Disconnect and Delete answered as done. This test runs it as it is run by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXTERNAL_MONGODB_URI

REPO = Path(__file__).resolve().parents[1]
SECONDS = 36
CLIENTS = 8
PROCESSES = 2


@pytest.mark.skipif(
    bool(EXTERNAL_MONGODB_URI), reason="stops and kills the embedded store, not MONGODB_URI"
)
def test_store_stopped_and_killed_under_load() -> None:
    """Answers within 5 s through a stall and a kill; restarted; whole records; full audit."""
    command = [sys.executable, "-m", "bench.soak", "--store-faults"]
    command += ["--seconds", str(SECONDS), "--clients", str(CLIENTS)]
    command += ["--processes", str(PROCESSES), "--warmup", "6"]
    completed = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=SECONDS + 120, check=False
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "store: SIGSTOP" in completed.stdout, output
    assert "store: restarted by its supervisor" in completed.stdout, output
    assert "PASS" in completed.stdout, output
    print(completed.stdout)
