"""JSON result files: written atomically, read with a one-line error that names the file
and what to do."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .atomic import atomic_path, remake_hint

__all__ = ["write_json", "read_json", "ResultFileError"]


def write_json(path, data) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1, default=_json_default)
    return path


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


class ResultFileError(ValueError):
    """A result file is missing or damaged; the message names it and what to do."""


def read_json(path) -> dict:
    """A JSON file, or a one-line :class:`ResultFileError` naming it and what to do."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ResultFileError(f"{path}: no such file; {remake_hint(path)}") from None
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{path}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}), "
                              f"truncated or corrupt; {remake_hint(path)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"{path}: cannot read it ({type(exc).__name__}: {exc}); "
                              f"{remake_hint(path)}") from None


