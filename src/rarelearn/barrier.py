"""Activation energy from an SMD work curve, read up to the break, and its statistics
over replicas.

E_a of one replica is the maximum of the spring's work W *before* the molecule breaks
(:mod:`rarelearn.breaks`: the first frame in which a bond of the starting structure is
past 2× the sum of its covalent radii). What happens after the break is reported on its
own (:func:`read_replica`): the work gained and the mean pull force after the break. A
reference's fragments no longer attract, so both are ~0 there; a potential whose
fragments still attract keeps gaining work, and reading max W over the whole pull would
count that error as barrier. A replica in which nothing broke has no barrier.

Units: eV, Å.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .breaks import find_break
from .dataset import Frames

__all__ = ["activation_energy", "read_replica", "ReplicaSummary", "summarize", "delta"]


def activation_energy(work: Sequence[float], spring_distance: Sequence[float],
                      until: int | None = None) -> tuple[float, float]:
    """E_a as the maximum of the spring's work, and where it was reached.

    Parameters
    ----------
    work : (F,) accumulated work W of the spring along the pull, eV
    spring_distance : (F,) centre-of-mass distance of the pulled groups, Å
    until : read frames ``[0, until)`` only (the break frame, :func:`read_replica`);
        None: every frame

    Returns
    -------
    (E_a, break_distance) : max W (eV) and the spring distance at that frame (Å);
        the first frame wins on ties. Non-finite W values are ignored.

    Raises
    ------
    ValueError
        on empty input, mismatched lengths, or no finite work value.
    """
    w = np.asarray(work, dtype=np.float64).reshape(-1)
    d = np.asarray(spring_distance, dtype=np.float64).reshape(-1)
    if w.shape != d.shape:
        raise ValueError(f"work and spring_distance differ in length ({w.size} vs {d.size})")
    if until is not None:
        w, d = w[:until], d[:until]
    finite = np.isfinite(w)
    if not finite.any():
        raise ValueError("no finite work values: cannot compute an activation energy")
    i = int(np.argmax(np.where(finite, w, -np.inf)))
    return float(w[i]), float(d[i])


def read_replica(frames: Frames, start_positions: np.ndarray | None = None, name: str = "") -> dict:
    """The barrier of one SMD replica, read up to the break, and what came after it.

    Parameters
    ----------
    frames : the replica's recorded pull (extras ``work`` eV, ``spring_distance`` Å,
        ``pull_force`` eV/Å as :func:`rarelearn.dynamics.run_smd` writes them)
    start_positions : (N, 3) Å, the structure whose bonds can break (the campaign's
        molecule); None: the first recorded frame
    name : the replica's name, copied into the record

    Returns
    -------
    dict (JSON types) with ``replica``, ``n_frames``, ``stop_reason``; the break
    (:meth:`rarelearn.breaks.BreakReport.as_dict`: ``broke``, ``break_frame``,
    ``broken_bond``, ``broken_elements``, ``broken_label``); ``ea`` = max W before the break
    frame (eV; NaN when nothing broke, or it broke before the first recorded frame);
    ``ea_distance`` the spring distance there (Å); ``break_distance`` the spring distance at
    the break frame (Å, NaN without a break); ``post_break_work`` = W(last) − W(break) (eV)
    and ``post_break_force`` = the mean pull force on the molecule after the break
    (eV/Å, positive while the fragments resist the pull), NaN without a break.
    """
    n = len(frames)
    rec = {"replica": name, "n_frames": n, "stop_reason": frames.attrs.get("stop_reason", "unknown")}
    nan = math.nan
    if n == 0:
        return {**rec, "broke": False, "break_frame": None, "broken_bond": None, "broken_elements": None,
                "broken_label": "none", "ea": nan, "ea_distance": nan, "break_distance": nan,
                "post_break_work": nan, "post_break_force": nan}
    brk = find_break(frames.numbers, frames.positions, start_positions)
    rec.update(brk.as_dict())
    w = np.asarray(frames.extras["work"], dtype=np.float64)
    d = np.asarray(frames.extras["spring_distance"], dtype=np.float64)
    if not brk.broke or brk.index == 0:
        rec.update(ea=nan, ea_distance=nan, break_distance=float(d[0]) if brk.broke else nan,
                   post_break_work=nan, post_break_force=nan)
        return rec
    b = brk.index
    ea, at = activation_energy(w, d, until=b)
    pull = -np.asarray(frames.extras["pull_force"], dtype=np.float64)[b:]
    rec.update(ea=ea, ea_distance=at, break_distance=float(d[b]),
               post_break_work=float(w[-1] - w[b]), post_break_force=float(np.nanmean(pull)))
    return rec


@dataclass
class ReplicaSummary:
    """Mean and spread of one quantity over independent replicas.

    Attributes
    ----------
    mean : arithmetic mean
    stderr : standard error of the mean, std(ddof=1)/sqrt(n); NaN for n = 1 (one replica
        says nothing about the spread — NaN keeps that visible instead of a false 0)
    std : sample standard deviation (ddof=1); NaN for n = 1
    n : number of replicas
    values : the replica values
    """

    mean: float
    stderr: float
    std: float
    n: int
    values: list = field(default_factory=list)


def summarize(values: Sequence[float]) -> ReplicaSummary:
    """:class:`ReplicaSummary` of replica values (e.g. E_a in eV). Empty input: NaNs, n = 0."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = int(v.size)
    if n == 0:
        return ReplicaSummary(math.nan, math.nan, math.nan, 0, [])
    mean = float(v.mean())
    if n == 1:
        return ReplicaSummary(mean, math.nan, math.nan, 1, [float(x) for x in v])
    std = float(v.std(ddof=1))
    return ReplicaSummary(mean, std / math.sqrt(n), std, n, [float(x) for x in v])


def delta(nnp: ReplicaSummary, ref: ReplicaSummary) -> tuple[float, float]:
    """Difference of means and its standard error.

    Returns
    -------
    (nnp.mean − ref.mean, sqrt(se_nnp² + se_ref²)). The error is NaN if either side has
    no standard error (a single replica); see ``evaluation.delta_record`` for the
    workflow's convention of counting a missing side as 0.
    """
    return float(nnp.mean - ref.mean), float(math.sqrt(nnp.stderr ** 2 + ref.stderr ** 2))
