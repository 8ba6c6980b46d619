"""A second bot process for refresh tests: many concurrent callers of `TokenService`.

    python -m tests.support.refresh_worker --connection ID --callers 100 (+ database, apps, key)

Prints "ready" once connected, waits for a line on stdin (so several workers start together),
then asks for the connection's access token from `--callers` coroutines at once and prints a
JSON object: {"tokens": [...], "errors": [...]}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from oauth.providers import load_registry
from oauth.tokens import TokenService
from storage.crypto import TokenCipher
from storage.database import open_database
from storage.embedded import MEMORY


async def run(arguments: argparse.Namespace) -> dict[str, list[str]]:
    async with open_database(
        mongodb_uri=arguments.mongodb_uri, database_name=arguments.database, data_dir=MEMORY
    ) as database:
        service = TokenService(
            providers=load_registry(Path(arguments.apps_file)),
            connections=database.connections,
            cipher=TokenCipher([arguments.key]),
        )
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        results = await asyncio.gather(
            *(service.access_token(arguments.connection) for _ in range(arguments.callers)),
            return_exceptions=True,
        )
    return {
        "tokens": [r for r in results if isinstance(r, str)],
        "errors": [type(r).__name__ for r in results if not isinstance(r, str)],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--mongodb-uri", "--database", "--apps-file", "--key", "--connection"):
        parser.add_argument(name, required=True)
    parser.add_argument("--callers", type=int, default=100)
    print(json.dumps(asyncio.run(run(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
