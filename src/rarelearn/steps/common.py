"""What every step shares: the job's log and thread count, and progress lines."""
from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["setup_logging", "log"]

log = logging.getLogger("rarelearn")


def setup_logging(path=None, threads: int | None = None) -> logging.Logger:
    """Send the package's log to ``path`` (and stderr); pin thread counts for the job."""
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        try:
            import torch

            torch.set_num_threads(int(threads))
        except ImportError:  # pragma: no cover
            pass
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        handlers=handlers, force=True)
    return log


def _progress(message: str) -> None:
    log.info(message)


