"""Preload of Dask worker processes (``dask worker ... --preload pipelines.dask_worker``; the local cluster of
``--runner dask --dask-workers N`` loads it itself): Beam's import-time warnings and INFO lines stay out of the
worker's stderr, errors still reach it (and the client, which re-raises a failed task's exception)."""

from __future__ import annotations

import logging
import os
import sys

from pipelines.worker import LOG_LEVEL_ENV


def dask_setup(worker: object) -> None:
    """Log records of TOKENMILL_WORKER_LOG_LEVEL (default ERROR) and up to stderr, before Beam is imported."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(os.environ.get(LOG_LEVEL_ENV, "ERROR"))
    handler.setFormatter(logging.Formatter("%(levelname)s dask worker %(process)d %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)  # also keeps logging.basicConfig() from adding its own
