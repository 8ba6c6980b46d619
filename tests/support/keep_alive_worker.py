"""A bot process running only the keep-alive job, for the two-process test.

    python -m tests.support.keep_alive_worker --mongodb-uri URI --database NAME \\
        --apps-file PATH --key=KEY --lease-s 0.2

Prints "ready" once connected, waits for a line on stdin (so two workers start together), then
runs rounds (each holding the job's lease only `--lease-s`, so rounds of two workers overlap)
until nothing is due, and prints the totals as one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

from connections.keep_alive import KeepAlive, RoundReport
from oauth.providers import load_registry
from oauth.tokens import TokenService
from storage.crypto import TokenCipher
from storage.database import open_database
from storage.embedded import MEMORY


async def run(arguments: argparse.Namespace) -> dict[str, int]:
    async with open_database(
        mongodb_uri=arguments.mongodb_uri, database_name=arguments.database, data_dir=MEMORY
    ) as database:
        providers = load_registry(Path(arguments.apps_file))
        tokens = TokenService(
            providers=providers,
            connections=database.connections,
            cipher=TokenCipher([arguments.key]),
        )
        keep_alive = KeepAlive(
            providers=providers,
            store=database.connections,
            tokens=tokens,
            leases=database.leases,
            interval_s=60,
            jitter_s=0.01,
            per_app=8,
            concurrency=16,
        )
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        totals = RoundReport()
        lease = timedelta(seconds=arguments.lease_s)
        while True:
            report = await keep_alive.round(lease_for=lease)
            if report is None:
                # The other worker holds the lease: try again when it may have run out.
                await asyncio.sleep(arguments.lease_s / 2)
                continue
            if not report.refreshed + report.not_due + report.broken + report.unavailable:
                break  # nothing was due any more
            totals.refreshed += report.refreshed
            totals.not_due += report.not_due
            totals.broken += report.broken
            totals.unavailable += report.unavailable
    result = asdict(totals)
    result.pop("skipped_apps")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--mongodb-uri", "--database", "--apps-file", "--key"):
        parser.add_argument(name, required=True)
    parser.add_argument("--lease-s", type=float, default=0.2)
    print(json.dumps(asyncio.run(run(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
