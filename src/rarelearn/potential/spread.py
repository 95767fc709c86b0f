"""The committee's spread per frame and the range of it seen on the training data."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from ase.data import chemical_symbols as _SYMBOLS

from ..chem.geometry import covalent_bonds
from ..dataset import Frames


# ---------------------------------------------------------------------- committee spread
def committee_spread(member_energies: np.ndarray, member_forces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy and force spread of a committee per frame.

    Parameters
    ----------
    member_energies : (K, F) eV
    member_forces : (K, F, N, 3) eV/Å

    Returns
    -------
    energy_std : (F,) eV, standard deviation of the member energies (ddof 0)
    force_std : (F,) eV/Å, max over atoms of ``sqrt(mean_k |F_k,i − mean_k F_k,i|²)``
    """
    e = np.asarray(member_energies, dtype=np.float64)
    f = np.asarray(member_forces, dtype=np.float64)
    dev = f - f.mean(axis=0, keepdims=True)
    per_atom = np.sqrt((dev ** 2).sum(axis=-1).mean(axis=0))  # (F, N)
    return e.std(axis=0), per_atom.max(axis=-1)


def _stats(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"min": None, "median": None, "p99": None, "max": None}
    return {"min": float(x.min()), "median": float(np.median(x)), "p99": float(np.percentile(x, 99)),
            "max": float(x.max())}


def trained_range(model, frames: Frames, reference_positions=None, pulled: Sequence[int] | None = None,
                  batch_size: int = 128) -> dict:
    """Where the potential was trained: energies, bond lengths and committee spreads over
    the usable frames of its training set.

    Parameters
    ----------
    model : the committee (either family)
    frames : the data set the committee was trained on
    reference_positions : (N, 3) Å, the molecule whose covalent bonds are measured (default:
        the first frame)
    pulled : the two pulled atoms (their distance is reported as ``pulled_distance``)

    Returns
    -------
    dict: ``frames``; ``energy`` {min, max} eV (reference labels); ``energy_above_min`` max,
    eV; ``bond_lengths`` {"C-C": {min, max, bonds}, ...} Å over the molecule's covalent bonds;
    ``pulled_distance`` {min, max} Å; ``energy_std`` and ``force_std`` statistics {min,
    median, p99, max} (eV, eV/Å) of the committee on these frames.
    """
    ok = frames.subset(frames.ok)
    if len(ok) == 0:
        raise ValueError("no usable frames in the training set")
    numbers = ok.numbers
    ref = ok.positions[0] if reference_positions is None else np.asarray(reference_positions, dtype=np.float64)
    bonds = covalent_bonds(numbers, ref)
    lengths = np.linalg.norm(ok.positions[:, bonds[:, 0]] - ok.positions[:, bonds[:, 1]], axis=-1)  # (F, M)
    by_pair: dict[str, dict] = {}
    for k, (i, j) in enumerate(bonds):
        a, b = sorted((_SYMBOLS[numbers[i]], _SYMBOLS[numbers[j]]), key=lambda s: (s != "C", s))
        key = f"{a}-{b}"
        rec = by_pair.setdefault(key, {"min": math.inf, "max": -math.inf, "bonds": 0})
        rec["min"] = min(rec["min"], float(lengths[:, k].min()))
        rec["max"] = max(rec["max"], float(lengths[:, k].max()))
        rec["bonds"] += 1
    out: dict[str, Any] = {
        "frames": len(ok),
        "energy": {"min": float(ok.energy.min()), "max": float(ok.energy.max())},
        "energy_above_min": float(ok.energy.max() - ok.energy.min()),
        "bond_lengths": by_pair,
    }
    if pulled is not None:
        i, j = int(pulled[0]), int(pulled[1])
        d = np.linalg.norm(ok.positions[:, i] - ok.positions[:, j], axis=-1)
        out["pulled_atoms"] = [i, j]
        out["pulled_distance"] = {"min": float(d.min()), "max": float(d.max())}
    e, f = model.energies_forces(numbers, ok.positions, batch_size=batch_size)
    es, fs = committee_spread(e, f)
    out["energy_std"] = _stats(es)
    out["force_std"] = _stats(fs)
    return out
