"""Frame sets and their HDF5 files.

A :class:`Frames` object holds F frames of one molecule (one composition, N atoms):
positions, reference energy and forces, per-frame provenance, and optional
per-frame scalar "extras" (spring distance, work, ...). Units: eV, Å, fs.

HDF5 layout (``layout = "rarelearn-frames"``, ``layout_version = 1``), readable
with h5py alone::

    /numbers                 (N,)      int64    atomic numbers
    /positions               (F, N, 3) float64  Å
    /energy                  (F,)      float64  eV   (NaN where not labelled)
    /forces                  (F, N, 3) float64  eV/Å (NaN where not labelled)
    /provenance/source       (F,)      str      md | smd | al | augment | hal | ...
    /provenance/iteration    (F,)      int64    active-learning iteration (-1: reference)
    /provenance/labeller     (F,)      str      e.g. gfn2-xtb ("" if unlabelled)
    /provenance/status       (F,)      str      ok | failed | screened | unlabelled
                                                (screened: labelled, but refused as
                                                unphysical by the labelling screen)
    /provenance/hash         (F,)      str      sha1 of numbers + positions (1e-6 Å)
    /extras/<name>           (F,)      float64  optional per-frame scalars, e.g.
                                                step, time_fs, spring_distance (Å),
                                                spring_reference (Å), pull_force (eV/Å),
                                                work (eV), potential_energy (eV)
    attributes on /          layout, layout_version, units, and free-form metadata
                             (JSON strings) such as stop_reason for MD runs.

Several molecules' files seen as one training set: :mod:`rarelearn.frameset`.

Every write goes to a temporary file in the same directory and is renamed into
place, so a killed job never leaves a half-written file under the final name; a write
that fails on a full disk says so, naming the file (:class:`rarelearn.atomic.atomic_path`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np

from .atomic import atomic_path, remake_hint

__all__ = [
    "LAYOUT",
    "LAYOUT_VERSION",
    "STATUS_OK",
    "STATUS_FAILED",
    "STATUS_UNLABELLED",
    "STATUS_SCREENED",
    "DatasetError",
    "Frames",
    "frame_hash",
    "read_frames",
    "write_frames",
    "merge_frames",
    "write_extxyz",
]

LAYOUT = "rarelearn-frames"
LAYOUT_VERSION = 1
STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_UNLABELLED = "unlabelled"
STATUS_SCREENED = "screened"


class DatasetError(ValueError):
    """A data set file is missing, truncated, or has another layout."""


def frame_hash(numbers: np.ndarray, positions: np.ndarray) -> str:
    """Content hash of one frame: atomic numbers and positions rounded to 1e-6 Å."""
    h = hashlib.sha1()
    h.update(np.asarray(numbers, dtype=np.int64).tobytes())
    h.update(np.round(np.asarray(positions, dtype=np.float64), 6).astype(np.float64).tobytes())
    return h.hexdigest()


def _str_array(values, n: int, default: str) -> np.ndarray:
    if values is None:
        return np.array([default] * n, dtype=object)
    if isinstance(values, str):
        return np.array([values] * n, dtype=object)
    arr = np.array(list(values), dtype=object)
    if arr.shape != (n,):
        raise ValueError(f"expected {n} values, got shape {arr.shape}")
    return arr


@dataclass
class Frames:
    """F frames of one molecule.

    Attributes
    ----------
    numbers : (N,) int atomic numbers
    positions : (F, N, 3) Å
    energy : (F,) eV, NaN where unlabelled
    forces : (F, N, 3) eV/Å, NaN where unlabelled
    source, labeller, status : (F,) str
    iteration : (F,) int
    extras : dict name -> (F,) float arrays
    attrs : free-form JSON-serialisable metadata of the whole set
    """

    numbers: np.ndarray
    positions: np.ndarray
    energy: np.ndarray | None = None
    forces: np.ndarray | None = None
    source: np.ndarray | None = None
    iteration: np.ndarray | None = None
    labeller: np.ndarray | None = None
    status: np.ndarray | None = None
    extras: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.numbers = np.asarray(self.numbers, dtype=np.int64).reshape(-1)
        pos = np.asarray(self.positions, dtype=np.float64)
        if pos.ndim == 2:
            pos = pos[None]
        n_atoms = self.numbers.shape[0]
        if pos.ndim != 3 or pos.shape[1:] != (n_atoms, 3):
            raise ValueError(f"positions must be (F, {n_atoms}, 3), got {pos.shape}")
        self.positions = pos
        f = pos.shape[0]
        self.energy = (np.full(f, np.nan) if self.energy is None
                       else np.asarray(self.energy, dtype=np.float64).reshape(f))
        self.forces = (np.full((f, n_atoms, 3), np.nan) if self.forces is None
                       else np.asarray(self.forces, dtype=np.float64).reshape(f, n_atoms, 3))
        self.source = _str_array(self.source, f, "unknown")
        self.labeller = _str_array(self.labeller, f, "")
        if self.status is None:
            self.status = np.array(
                [STATUS_OK if np.isfinite(e) else STATUS_UNLABELLED for e in self.energy], dtype=object)
        else:
            self.status = _str_array(self.status, f, STATUS_UNLABELLED)
        self.iteration = (np.full(f, -1, dtype=np.int64) if self.iteration is None
                          else np.broadcast_to(np.asarray(self.iteration, dtype=np.int64), (f,)).copy())
        self.extras = {k: np.asarray(v, dtype=np.float64).reshape(f) for k, v in self.extras.items()}

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def hashes(self) -> np.ndarray:
        return np.array([frame_hash(self.numbers, p) for p in self.positions], dtype=object)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of frames usable for training (status ok, finite labels)."""
        finite = np.isfinite(self.energy) & np.isfinite(self.forces).all(axis=(1, 2))
        return (self.status == STATUS_OK) & finite

    def subset(self, index) -> "Frames":
        """Frames at ``index`` (int array, slice or boolean mask); a copy."""
        idx = np.arange(len(self))[index]
        return Frames(
            numbers=self.numbers.copy(),
            positions=self.positions[idx].copy(),
            energy=self.energy[idx].copy(),
            forces=self.forces[idx].copy(),
            source=self.source[idx].copy(),
            iteration=self.iteration[idx].copy(),
            labeller=self.labeller[idx].copy(),
            status=self.status[idx].copy(),
            extras={k: v[idx].copy() for k, v in self.extras.items()},
            attrs=dict(self.attrs),
        )

    def to_atoms(self, i: int):
        """Frame ``i`` as an :class:`ase.Atoms` (with a single-point calculator if labelled)."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = Atoms(numbers=self.numbers, positions=self.positions[i])
        if np.isfinite(self.energy[i]):
            atoms.calc = SinglePointCalculator(atoms, energy=float(self.energy[i]),
                                               forces=self.forces[i].copy())
        atoms.info.update({"source": str(self.source[i]), "iteration": int(self.iteration[i]),
                           "labeller": str(self.labeller[i]), "status": str(self.status[i])})
        for k, v in self.extras.items():
            atoms.info[k] = float(v[i])
        return atoms

    @classmethod
    def from_atoms(cls, images: Sequence, source: str = "unknown", iteration: int = -1) -> "Frames":
        """Frames from ASE Atoms (same composition); energies/forces taken if a calculator has them."""
        images = list(images)
        if not images:
            raise ValueError("no structures given")
        numbers = images[0].numbers
        for a in images:
            if not np.array_equal(a.numbers, numbers):
                raise ValueError("all structures in one data set must have the same atoms in the same order")
        energy, forces = [], []
        for a in images:
            try:
                energy.append(a.get_potential_energy())
                forces.append(a.get_forces())
            except Exception:  # no calculator / no results
                energy.append(np.nan)
                forces.append(np.full((len(a), 3), np.nan))
        return cls(numbers=numbers, positions=np.stack([a.positions for a in images]),
                   energy=energy, forces=forces, source=source, iteration=iteration)

    @classmethod
    def concatenate(cls, parts: Iterable["Frames"]) -> "Frames":
        """Join frame sets of the same molecule; extras kept where every part has them."""
        parts = [p for p in parts if p is not None]
        if not parts:
            raise ValueError("nothing to concatenate")
        numbers = parts[0].numbers
        for p in parts[1:]:
            if not np.array_equal(p.numbers, numbers):
                raise DatasetError("cannot merge frame sets of different molecules "
                                   f"({len(numbers)} vs {len(p.numbers)} atoms / different elements)")
        keys = set(parts[0].extras)
        for p in parts[1:]:
            keys &= set(p.extras)
        attrs = {}
        for p in parts:
            attrs.update(p.attrs)
        return cls(
            numbers=numbers,
            positions=np.concatenate([p.positions for p in parts]),
            energy=np.concatenate([p.energy for p in parts]),
            forces=np.concatenate([p.forces for p in parts]),
            source=np.concatenate([p.source for p in parts]),
            iteration=np.concatenate([p.iteration for p in parts]),
            labeller=np.concatenate([p.labeller for p in parts]),
            status=np.concatenate([p.status for p in parts]),
            extras={k: np.concatenate([p.extras[k] for p in parts]) for k in sorted(keys)},
            attrs=attrs,
        )

    @classmethod
    def empty_like(cls, other: "Frames") -> "Frames":
        return other.subset(np.zeros(len(other), dtype=bool))

    @classmethod
    def empty(cls, numbers) -> "Frames":
        """No frames of the molecule with atomic numbers ``numbers``."""
        return cls(np.asarray(numbers), np.zeros((0, len(numbers), 3)))


def write_frames(path, frames: Frames) -> Path:
    """Write ``frames`` to an HDF5 file atomically; returns the path."""
    path = Path(path)
    str_dt = h5py.string_dtype()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["layout"] = LAYOUT
            h5.attrs["layout_version"] = LAYOUT_VERSION
            h5.attrs["units"] = "energy: eV, length: angstrom, forces: eV/angstrom, time: fs"
            h5.attrs["n_frames"] = len(frames)
            for k, v in frames.attrs.items():
                h5.attrs[f"meta_{k}"] = json.dumps(v, default=float)
            h5.create_dataset("numbers", data=frames.numbers)
            h5.create_dataset("positions", data=frames.positions)
            h5.create_dataset("energy", data=frames.energy)
            h5.create_dataset("forces", data=frames.forces)
            prov = h5.create_group("provenance")
            for name in ("source", "labeller", "status"):
                prov.create_dataset(name, data=np.asarray(getattr(frames, name), dtype=object), dtype=str_dt)
            prov.create_dataset("hash", data=frames.hashes, dtype=str_dt)
            prov.create_dataset("iteration", data=frames.iteration)
            ex = h5.create_group("extras")
            for k, v in frames.extras.items():
                ex.create_dataset(k, data=v)
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_str(ds) -> np.ndarray:
    return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in ds[()]], dtype=object)


def read_frames(path) -> Frames:
    """Read a frame set written by :func:`write_frames`.

    Raises :class:`DatasetError` naming the file when it is missing, truncated or of another layout.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such data set file")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file (truncated or corrupt: "
                           f"{_first_line(exc)}); {remake_hint(path)}") from exc
    with h5:
        layout = h5.attrs.get("layout")
        version = h5.attrs.get("layout_version")
        if layout != LAYOUT:
            raise DatasetError(f"{path}: not a rarelearn data set (layout attribute {layout!r}, "
                               f"expected {LAYOUT!r})")
        if int(version) != LAYOUT_VERSION:
            raise DatasetError(f"{path}: data set layout version {version}, this rarelearn reads "
                               f"version {LAYOUT_VERSION}; re-create it with this version")
        try:
            prov = h5["provenance"]
            frames = Frames(
                numbers=h5["numbers"][()],
                positions=h5["positions"][()],
                energy=h5["energy"][()],
                forces=h5["forces"][()],
                source=_read_str(prov["source"]),
                labeller=_read_str(prov["labeller"]),
                status=_read_str(prov["status"]),
                iteration=prov["iteration"][()],
                extras={k: h5["extras"][k][()] for k in h5["extras"]},
                attrs={k[5:]: json.loads(v) for k, v in h5.attrs.items() if k.startswith("meta_")},
            )
        except (KeyError, OSError, ValueError) as exc:
            raise DatasetError(f"{path}: incomplete rarelearn data set ({_first_line(exc)}); "
                               f"{remake_hint(path)}") from exc
        n = h5.attrs.get("n_frames")
        if n is not None and int(n) != len(frames):
            raise DatasetError(f"{path}: header says {int(n)} frames, file holds {len(frames)}; "
                               f"{remake_hint(path)}")
    return frames


def merge_frames(parts: Iterable[Frames], only_ok: bool = True) -> tuple[Frames, dict]:
    """Append frame sets and drop duplicates by content hash (first occurrence kept).

    With ``only_ok`` frames whose status is not ``ok`` (failed labels) are left out.
    Returns the merged set and counts: ``{"input", "duplicates", "not_ok", "output"}``.
    """
    merged = Frames.concatenate(parts)
    hashes = merged.hashes
    _, first = np.unique(hashes, return_index=True)
    keep = np.zeros(len(merged), dtype=bool)
    keep[first] = True
    n_dup = int(len(merged) - keep.sum())
    not_ok = ~merged.ok
    if only_ok:
        keep &= merged.ok
    out = merged.subset(np.flatnonzero(keep))
    return out, {"input": len(merged), "duplicates": n_dup,
                 "not_ok": int(not_ok.sum()), "output": len(out)}


def write_extxyz(path, frames: Frames) -> Path:
    """Export to extended XYZ (ASE reads it back with energies, forces and provenance)."""
    from ase.io import write

    path = Path(path)
    with atomic_path(path) as tmp:
        write(tmp, [frames.to_atoms(i) for i in range(len(frames))], format="extxyz")
    return path
