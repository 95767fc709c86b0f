"""Errors of a committee on labelled frames, and its best member (eV, eV/Å)."""
from __future__ import annotations

import numpy as np

from ..dataset import Frames
from ..models.ani import EnsembleModel

__all__ = ["best_member", "evaluate_errors"]


def _ok_subset(frames: Frames) -> Frames:
    return frames.subset(np.flatnonzero(frames.ok))


def best_member(ensemble: EnsembleModel, frames: Frames) -> tuple[int, list[float]]:
    """Member with the lowest force-component MAE over all usable frames (train + val).

    Returns
    -------
    k : index of the best member
    force_maes : (K,) per-member force MAE, eV/Å (mean |ΔF| over frames, atoms, components)
    """
    ok = _ok_subset(frames)
    if len(ok) == 0:
        raise ValueError("no usable frames to rank the members on")
    _, f = ensemble.energies_forces(ok.numbers, ok.positions)
    maes = [float(np.abs(f[k] - ok.forces).mean()) for k in range(f.shape[0])]
    return int(np.argmin(maes)), maes


def evaluate_errors(ensemble_or_member: EnsembleModel, frames: Frames) -> dict:
    """Errors of the ensemble-mean prediction (or of a one-member ensemble) on usable frames.

    Returns
    -------
    dict: energy_mae (eV), force_mae (eV/Å, per component), energy_rmse (eV),
    force_rmse (eV/Å), n_frames
    """
    ok = _ok_subset(frames)
    if len(ok) == 0:
        nan = float("nan")
        return {"energy_mae": nan, "force_mae": nan, "energy_rmse": nan, "force_rmse": nan, "n_frames": 0}
    e, f = ensemble_or_member.energies_forces(ok.numbers, ok.positions)
    de = e.mean(axis=0) - ok.energy
    df = f.mean(axis=0) - ok.forces
    return {"energy_mae": float(np.abs(de).mean()), "force_mae": float(np.abs(df).mean()),
            "energy_rmse": float(np.sqrt((de ** 2).mean())), "force_rmse": float(np.sqrt((df ** 2).mean())),
            "n_frames": len(ok)}
