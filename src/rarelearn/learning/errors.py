"""Errors of a committee on labelled frames, and its best member (eV, eV/Å): by force error
(:func:`best_member`, the paper's) or as the committee's median barrier
(:func:`median_cogef_member`, ``model.best_member: cogef_median``).

Frames of one molecule (:class:`Frames`) or of several (:class:`FrameSet`): the errors
are then taken over the usable frames of all parts together (sums over every part's
frames, atoms and components, divided by the total counts)."""
from __future__ import annotations

import numpy as np

from ..dataset import Frames
from ..frameset import FrameSet
from ..models.ani import EnsembleModel

__all__ = ["best_member", "median_cogef_member", "evaluate_errors"]


def _ok_parts(frames: Frames | FrameSet) -> list[Frames]:
    """The usable frames of each molecule (parts with none left out)."""
    parts = frames.parts if isinstance(frames, FrameSet) else [frames]
    return [s for s in (p.subset(np.flatnonzero(p.ok)) for p in parts) if len(s)]


def best_member(ensemble: EnsembleModel, frames: Frames | FrameSet) -> tuple[int, list[float]]:
    """Member with the lowest force-component MAE over all usable frames (train + val).

    Returns
    -------
    k : index of the best member
    force_maes : (K,) per-member force MAE, eV/Å (mean |ΔF| over frames, atoms, components;
        of all parts together for a FrameSet)
    """
    parts = _ok_parts(frames)
    if not parts:
        raise ValueError("no usable frames to rank the members on")
    abs_sum, count = 0.0, 0
    for ok in parts:
        _, f = ensemble.energies_forces(ok.numbers, ok.positions)
        abs_sum = abs_sum + np.abs(f - ok.forces).reshape(f.shape[0], -1).sum(axis=1)
        count += ok.forces.size
    maes = [float(s) / count for s in abs_sum]
    return int(np.argmin(maes)), maes


def median_cogef_member(e_max, broke, validation_maes) -> tuple[int, list[float]]:
    """The member whose own COGEF maximum is the committee's median (no reference read).

    The members of one committee, fitted to the same data, can put the barrier kcal/mol
    apart (the stretched bond gives way at different extensions); the force error over the
    data set, mostly equilibrium frames, does not rank them by the barrier. The median of
    the members' maxima is the committee's own central estimate, and the member at it the
    one least likely to be the committee's outlier. Each member's maximum is ranked among
    the committee's per molecule (a member that did not break ranks above every one that
    did, its maximum unbounded); the chosen member has the smallest sum over the molecules
    of its rank's distance from the middle rank, (K-1)/2; ties go to the lower force error.

    Parameters
    ----------
    e_max : (M, K) COGEF maximum of member k on molecule m, eV (any value where it did not break)
    broke : (M, K) bool, whether member k's scan of molecule m broke a bond
    validation_maes : (K,) force MAE of each member over the data set (the tie-break)

    Returns
    -------
    (k, distance): the chosen member and each member's summed rank distance
    """
    e = np.where(np.asarray(broke, dtype=bool), np.asarray(e_max, dtype=np.float64), np.inf)
    if e.ndim != 2 or e.shape[1] != len(validation_maes):
        raise ValueError(f"e_max has shape {e.shape}, expected (molecules, {len(validation_maes)} members)")
    n = e.shape[1]
    # rank of each member per molecule: ties (several unbroken) share their mean rank
    ranks = np.zeros_like(e)
    for m, row in enumerate(e):
        order = np.argsort(row, kind="stable")
        r = np.empty(n)
        r[order] = np.arange(n, dtype=np.float64)
        for v in np.unique(row):
            same = row == v
            r[same] = r[same].mean()
        ranks[m] = r
    distance = np.abs(ranks - (n - 1) / 2.0).sum(axis=0)
    k = min(range(n), key=lambda i: (distance[i], validation_maes[i]))
    return int(k), [float(d) for d in distance]


def evaluate_errors(ensemble_or_member: EnsembleModel, frames: Frames | FrameSet) -> dict:
    """Errors of the ensemble-mean prediction (or of a one-member ensemble) on usable frames
    (of all parts together for a FrameSet).

    Returns
    -------
    dict: energy_mae (eV), force_mae (eV/Å, per component), energy_rmse (eV),
    force_rmse (eV/Å), n_frames
    """
    parts = _ok_parts(frames)
    if not parts:
        nan = float("nan")
        return {"energy_mae": nan, "force_mae": nan, "energy_rmse": nan, "force_rmse": nan, "n_frames": 0}
    sums = np.zeros(4)  # Σ|ΔE|, Σ|ΔF|, ΣΔE², ΣΔF²
    n_frames = n_comp = 0
    for ok in parts:
        e, f = ensemble_or_member.energies_forces(ok.numbers, ok.positions)
        de = e.mean(axis=0) - ok.energy
        df = f.mean(axis=0) - ok.forces
        sums += [np.abs(de).sum(), np.abs(df).sum(), (de ** 2).sum(), (df ** 2).sum()]
        n_frames += len(ok)
        n_comp += df.size
    return {"energy_mae": float(sums[0]) / n_frames, "force_mae": float(sums[1]) / n_comp,
            "energy_rmse": float(np.sqrt(sums[2] / n_frames)), "force_rmse": float(np.sqrt(sums[3] / n_comp)),
            "n_frames": n_frames}
