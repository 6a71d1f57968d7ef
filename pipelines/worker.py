"""Entry point of local worker processes (``--workers N``): Beam's SDK harness, logging only what matters.

Beam's own worker entry point logs its start-up at INFO to stderr whatever the pipeline options say; these
lines would interleave with the progress display. Worker errors still reach the user: the runner re-raises them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

LOG_LEVEL_ENV = "TOKENMILL_WORKER_LOG_LEVEL"


def main() -> None:
    """Run one SDK harness with a stderr handler at TOKENMILL_WORKER_LOG_LEVEL (default ERROR)."""
    # Ctrl-C reaches the whole process group: a worker stops at once and silently (writing nothing more), the
    # launcher reports it once and removes the temp files
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(os.environ.get(LOG_LEVEL_ENV, "ERROR"))
    handler.setFormatter(logging.Formatter("%(levelname)s worker %(process)d %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)  # also keeps logging.basicConfig() from adding its own
    from apache_beam.runners.worker import sdk_worker_main

    from pipelines.beam_tuning import shorten_state_sampling

    shorten_state_sampling()
    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
