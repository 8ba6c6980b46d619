"""The soak: 16 concurrent clients for 60 s, each a
different person, mixing `personal_connections`, Disconnect, Delete (with Confirm) and a recipe
over two real `python app.py` processes on one database throughout.

The rule: 0 errors (every answer a 200 with the expected card or line, nothing saying
"something went wrong", every recipe's result posted, exactly one audit event per Disconnect
and Delete that was answered as done), RSS growth of each bot process under 10% from the end of
the warm-up to the end of the load, and p99 latency reported per kind. `bench.soak` exits
non-zero when the rule is broken; this test runs it as it is run by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXTERNAL_MONGODB_URI

REPO = Path(__file__).resolve().parents[1]
WARMUP = 10  # RSS growth is judged from here to the end of the load
SECONDS = 60
CLIENTS = 16
PROCESSES = 2


def test_soak_sixteen_clients_two_processes_sixty_seconds() -> None:
    """`python -m bench.soak --seconds 60 --warmup 10 --clients 16 --processes 2` exits 0
    and reports p99 and RSS growth."""
    env = dict(os.environ)
    if EXTERNAL_MONGODB_URI:
        env["MONGODB_URI"] = EXTERNAL_MONGODB_URI
    command = [sys.executable, "-m", "bench.soak"]
    command += ["--seconds", str(SECONDS), "--clients", str(CLIENTS)]
    command += ["--processes", str(PROCESSES), "--warmup", str(WARMUP)]
    completed = subprocess.run(
        command,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SECONDS + 90,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "p99" in completed.stdout, output
    assert "RSS growth:" in completed.stdout, output
    print(completed.stdout)
