"""``python -m ingest.decodeworker IN_FD OUT_FD``: one decode worker of the hub (ingest/decodepool.py).

Started by the hub with two pipe ends; it imports only what decoding needs (not the web stack), so
each worker costs the registry's memory and little more.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from multiprocessing.connection import Connection

from ingest.decodepool import serve


def main(argv: list[str]) -> int:
    """Decode chunks from the pipe ``argv[0]`` and send results to ``argv[1]`` until the hub closes it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s decode-worker %(message)s")
    inbox = Connection(int(argv[0]), writable=False)
    outbox = Connection(int(argv[1]), readable=False)
    # The hub went away: nothing of ours is unsaved.
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        serve(inbox, outbox)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
