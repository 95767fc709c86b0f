"""Atomic file writes (a temporary name in the same folder, renamed into place when
complete; a full disk named as such), and what to do about a damaged result file."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "remake_hint"]


def remake_hint(path) -> str:
    """What to do about a damaged file: a workflow result (under ``results/``) is remade
    with Snakemake's ``--forcerun`` (which redoes what was made from it too); anything
    else is to be replaced."""
    if "results" in Path(path).parts:
        return (f"remake it and what was made from it: snakemake --cores 2 --forcerun {path} "
                "(python -m rarelearn.check lists every damaged result)")
    return "replace it with a good copy"


#: Below this many free bytes a failed write is taken for a full disk.
_NEARLY_FULL = 1 << 20


def _disk_full_error(path: Path, tmp: Path, exc: BaseException) -> OSError | None:
    """One-line ``OSError(ENOSPC)`` naming ``path`` when writing it failed because its disk
    is full (the error says ENOSPC, or less than 1 MiB is free while the partial file is
    still there; torch.save reports a full disk only as ``basic_ios::clear`` or a zip
    error)."""
    if isinstance(exc, OSError) and exc.errno not in (None, errno.ENOSPC, errno.EDQUOT):
        return None
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    try:
        free = shutil.disk_usage(tmp.parent if tmp.parent.exists() else path.parent).free
    except OSError:
        free = None
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not full and (free is None or free >= _NEARLY_FULL):
        return None
    left = f", {free} bytes free" if free is not None else ""
    return OSError(errno.ENOSPC, f"No space left on device writing {path} (nothing partial was kept{left}); "
                                 f"free space on {path.parent.resolve()}'s disk and run the same command again")


class atomic_path:
    """Context manager giving a temporary path next to ``path``; renamed onto it on success.

    >>> with atomic_path("out.h5") as tmp:
    ...     write_something(tmp)
    """

    def __init__(self, path) -> None:
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                os.replace(self.tmp, self.path)
            except BaseException:
                self.tmp.unlink(missing_ok=True)
                raise
            return
        full = _disk_full_error(self.path, self.tmp, exc)
        self.tmp.unlink(missing_ok=True)
        if full is not None:
            raise full from exc
