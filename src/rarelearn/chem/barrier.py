"""Activation energy from an SMD work curve, read up to the break, and its statistics
over replicas: the one module for barrier statistics (mean, standard error, the
difference to the reference with one NaN rule, :func:`combine`; how many more rounds of
replicas a target standard error calls for, :func:`rounds_to_go`).

E_a of one replica is the maximum of the spring's work W *before* the molecule breaks
(:mod:`rarelearn.chem.breaks`: the first frame in which a bond of the starting structure is
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
from pathlib import Path
from typing import Sequence

import numpy as np

from ..dataset import Frames, read_frames
from ..units import KCAL_MOL_PER_EV
from .breaks import find_break, snap_start

__all__ = ["activation_energy", "pull_began", "read_replica", "ReplicaSummary", "summarize", "Delta", "combine",
           "delta", "barrier_record", "delta_record", "barrier_of_files", "RoundsToGo", "rounds_to_go"]


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


def pull_began(frames: Frames) -> bool:
    """Whether an SMD replica's frames are frames of the pull. False for a replica that
    stopped before the pull began: no frames, or only the relaxation's up to a blow-up
    (``attrs["phase"] == "relaxation"``, :func:`rarelearn.md.dynamics.run_smd`); such a
    replica has no work curve and no barrier, but its frames still go to the selection."""
    return len(frames) > 0 and frames.attrs.get("phase", "pull") != "relaxation"


def read_replica(frames: Frames, start_positions: np.ndarray | None = None, name: str = "") -> dict:
    """The barrier of one SMD replica, read up to the break, and what came after it.

    Parameters
    ----------
    frames : the replica's recorded pull (extras ``work`` eV, ``spring_distance`` Å,
        ``pull_force`` eV/Å as :func:`rarelearn.md.dynamics.run_smd` writes them)
    start_positions : (N, 3) Å, the structure whose bonds can break (the campaign's
        molecule); None: the first recorded frame
    name : the replica's name, copied into the record

    Returns
    -------
    dict (JSON types) with ``replica``, ``n_frames``, ``stop_reason``; the break
    (:meth:`rarelearn.chem.breaks.BreakReport.as_dict`: ``broke``, ``break_frame``,
    ``broken_bond``, ``broken_elements``, ``broken_label``); ``ea`` = max W before the break
    frame (eV; NaN when nothing broke, or it broke before the first recorded frame);
    ``ea_distance`` the spring distance there (Å); ``break_distance`` the spring distance at
    the break frame (Å, NaN without a break); ``post_break_work`` = W(last) − W(break) (eV)
    and ``post_break_force`` = the mean pull force on the molecule after the break
    (eV/Å, positive while the fragments resist the pull), NaN without a break; ``pull_began``
    (:func:`pull_began`): a replica that stopped before the pull has no barrier and nothing broke;
    ``peak_force`` the largest pull force before the break (eV/Å), ``snap_frame``
    (:func:`rarelearn.chem.breaks.snap_start`: the last frame in which the bond that broke was
    still a bond), ``snap_distance`` the spring distance there (Å) and ``work_to_snap`` W there
    (eV; NaN without a break): E_a is the work that stretched the chain up to the snap plus the
    work while the bond snaps, and a potential can be right on the one and wrong on the other.
    """
    n = len(frames)
    rec = {"replica": name, "n_frames": n, "stop_reason": frames.attrs.get("stop_reason", "unknown"),
           "pull_began": pull_began(frames)}
    nan = math.nan
    if not rec["pull_began"]:
        return {**rec, "broke": False, "break_frame": None, "broken_bond": None, "broken_elements": None,
                "broken_label": "none", "ea": nan, "ea_distance": nan, "break_distance": nan,
                "post_break_work": nan, "post_break_force": nan, **_NO_SNAP}
    brk = find_break(frames.numbers, frames.positions, start_positions)
    rec.update(brk.as_dict())
    w = np.asarray(frames.extras["work"], dtype=np.float64)
    d = np.asarray(frames.extras["spring_distance"], dtype=np.float64)
    if not brk.broke or brk.index == 0:
        rec.update(ea=nan, ea_distance=nan, break_distance=float(d[0]) if brk.broke else nan,
                   post_break_work=nan, post_break_force=nan, **_NO_SNAP)
        return rec
    b = brk.index
    ea, at = activation_energy(w, d, until=b)
    force = -np.asarray(frames.extras["pull_force"], dtype=np.float64)
    k = snap_start(frames.numbers, frames.positions, brk)
    rec.update(ea=ea, ea_distance=at, break_distance=float(d[b]),
               post_break_work=float(w[-1] - w[b]), post_break_force=float(np.nanmean(force[b:])),
               peak_force=float(np.nanmax(force[:b])) if np.isfinite(force[:b]).any() else math.nan,
               snap_frame=k, snap_distance=float(d[k]), work_to_snap=float(w[k]))
    return rec


_NO_SNAP = {"peak_force": math.nan, "snap_frame": None, "snap_distance": math.nan, "work_to_snap": math.nan}


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


@dataclass(frozen=True)
class RoundsToGo:
    """Whether a replica mean is precise enough, and how many more rounds it may take.

    Attributes
    ----------
    rounds : further rounds of replicas estimated to bring the standard error to the target
        (0: stop now; at least 1 while the target is not met and there is room)
    reason : why: ``fixed`` (no target), ``target_met``, ``max_replicas`` (no room left),
        ``no_barrier`` (no replica has a barrier: more of the same pull will not help),
        ``stderr_undefined`` (one barrier: no spread yet, one more round) or
        ``above_target`` (an estimate from the spread so far)
    stderr : standard error of the mean now (eV; NaN below two barriers)
    replicas_needed : estimated replicas in all (run so far included, at most
        ``max_replicas``) that meet the target; None where it cannot be estimated
    """

    rounds: int
    reason: str
    stderr: float
    replicas_needed: int | None


def rounds_to_go(values: Sequence[float], replicas_run: int, per_round: int, target_stderr: float | None,
                 max_replicas: int) -> RoundsToGo:
    """The stopping rule of replicas run in rounds: run ``per_round`` more replicas while the
    standard error of their mean (:func:`summarize`) is above ``target_stderr`` and fewer
    than ``max_replicas`` have run.

    Parameters
    ----------
    values : (n,) the quantity of each replica that has one (E_a, eV); non-finite values
        (a replica without a barrier) are left out
    replicas_run : replicas run so far, those without a value included (>= the finite values)
    per_round : replicas per round (>= 1)
    target_stderr : the standard error to reach (eV); None: a fixed count, never another round
    max_replicas : the most replicas to run in all

    Returns
    -------
    :class:`RoundsToGo`. The estimate: n* = ceil((std / target)²) values meet the target;
    with the fraction f of replicas run so far that has a value, ceil(n* / f) replicas in all
    (at most ``max_replicas``), in rounds of ``per_round``. Only whether it is 0 decides;
    the number says how far off the target is (it is made again after every round).
    """
    if per_round < 1:
        raise ValueError(f"per_round must be at least 1, got {per_round}")
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if replicas_run < v.size:
        raise ValueError(f"replicas_run ({replicas_run}) is less than the values given ({v.size})")
    s = summarize(v)
    if target_stderr is None:
        return RoundsToGo(0, "fixed", s.stderr, None)
    if not target_stderr > 0:
        raise ValueError(f"target_stderr must be positive, got {target_stderr}")
    if math.isfinite(s.stderr) and s.stderr <= target_stderr:
        return RoundsToGo(0, "target_met", s.stderr, replicas_run)
    room = max_replicas - replicas_run
    if room <= 0:
        return RoundsToGo(0, "max_replicas", s.stderr, None)
    if s.n == 0:
        return RoundsToGo(0, "no_barrier", s.stderr, None)
    if s.n == 1:
        return RoundsToGo(1, "stderr_undefined", s.stderr, None)
    # s.stderr > target, so n* > n >= 2 and at least one more replica is needed
    n_star = math.ceil((s.std / target_stderr) ** 2 - 1e-9)
    needed = math.ceil(n_star * replicas_run / s.n - 1e-9)
    more = min(needed, max_replicas) - replicas_run
    return RoundsToGo(max(1, math.ceil(more / per_round)), "above_target", s.stderr, min(needed, max_replicas))


@dataclass(frozen=True)
class Delta:
    """A difference of two replica means and its standard error, by the one NaN rule.

    Attributes
    ----------
    value : a.mean − b.mean (NaN when either side has no barrier at all)
    defined : both sides have a standard error (n ≥ 2 each) and the difference is finite
    stderr : sqrt(se_a² + se_b²) when ``defined``, else NaN
    partial_stderr : the same sum with a missing side counted as 0 (what the workflow
        records next to ``defined``); NaN when the difference is NaN — never a finite
        error beside a NaN difference
    """

    value: float
    defined: bool
    stderr: float
    partial_stderr: float


def combine(mean_a: float, se_a: float, mean_b: float, se_b: float) -> Delta:
    """The one rule for a difference of means (:class:`Delta`)."""
    value = float(mean_a - mean_b)
    if not math.isfinite(value):
        return Delta(value, False, math.nan, math.nan)
    missing_a, missing_b = math.isnan(se_a), math.isnan(se_b)
    partial = math.sqrt((0.0 if missing_a else se_a) ** 2 + (0.0 if missing_b else se_b) ** 2)
    defined = not (missing_a or missing_b)
    return Delta(value, defined, partial if defined else math.nan, partial)


def delta(nnp: ReplicaSummary, ref: ReplicaSummary) -> tuple[float, float]:
    """Difference of means and its standard error (:func:`combine`).

    Returns
    -------
    (nnp.mean − ref.mean, sqrt(se_nnp² + se_ref²)); the error is NaN when it is not
    defined (a side with a single replica); :func:`delta_record` also reports the partial
    error that counts a missing side as 0.
    """
    d = combine(nnp.mean, nnp.stderr, ref.mean, ref.stderr)
    return d.value, d.stderr


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def barrier_record(replicas: Sequence[dict]) -> dict:
    """E_a statistics over SMD replica records (:func:`read_replica`).

    Only replicas that broke carry a barrier; the others are counted (``unbroken``) and
    named (``unbroken_replicas``), never read off their last frame. Mean, standard error
    and std follow :func:`summarize` (NaN for fewer than two values).

    Returns
    -------
    dict: ``ea_mean``, ``ea_stderr``, ``ea_std``, ``n_replicas`` (replicas with a barrier),
    ``ea_values``, ``break_distance_mean``/``break_distances`` (spring distance at the break,
    Å), ``ea_distance_mean`` (spring distance at max W), ``post_break_work_mean``/``_stderr``
    (eV), ``post_break_force_mean`` (eV/Å), ``unbroken``, ``unbroken_replicas``,
    ``per_bond`` (bond label -> mean, stderr, n of its E_a), ``replica_records``;
    ``peak_force_mean`` (eV/Å), ``work_to_snap_mean`` and ``work_in_snap_mean`` (E_a − W at the
    snap's start, eV), NaN where the records lack them (read before 2026-12-07).
    """
    with_barrier = [r for r in replicas if r.get("broke") and _finite(r.get("ea"))]
    ea = summarize([r["ea"] for r in with_barrier])
    post_w = summarize([r["post_break_work"] for r in with_barrier])
    post_f = summarize([r["post_break_force"] for r in with_barrier])
    per_bond: dict[str, dict] = {}
    for label in sorted({r["broken_label"] for r in with_barrier}):
        s = summarize([r["ea"] for r in with_barrier if r["broken_label"] == label])
        per_bond[label] = {"ea_mean": s.mean, "ea_stderr": s.stderr, "n": s.n}
    unbroken = [r["replica"] for r in replicas if r.get("n_frames", 0) > 0 and r.get("pull_began", True)
                and not r.get("broke")]
    dists = [r["break_distance"] for r in with_barrier]
    snaps = [r for r in with_barrier if _finite(r.get("work_to_snap", math.nan))]

    def snap_mean(f) -> float:
        return float(np.mean([f(r) for r in snaps])) if snaps else math.nan
    return {
        "ea_mean": ea.mean,
        "ea_stderr": ea.stderr,
        "ea_std": ea.std,
        "n_replicas": ea.n,
        "ea_values": ea.values,
        "break_distance_mean": float(np.mean(dists)) if dists else math.nan,
        "break_distances": [float(x) for x in dists],
        "ea_distance_mean": float(np.mean([r["ea_distance"] for r in with_barrier])) if with_barrier else math.nan,
        "post_break_work_mean": post_w.mean,
        "post_break_work_stderr": post_w.stderr,
        "post_break_force_mean": post_f.mean,
        "peak_force_mean": snap_mean(lambda r: r["peak_force"]),
        "work_to_snap_mean": snap_mean(lambda r: r["work_to_snap"]),
        "work_in_snap_mean": snap_mean(lambda r: r["ea"] - r["work_to_snap"]),
        "unbroken": len(unbroken),
        "unbroken_replicas": unbroken,
        "per_bond": per_bond,
        "replica_records": list(replicas),
    }


def delta_record(nnp: dict, ref: dict) -> dict:
    """ΔE_a = mean(NNP) − mean(reference) with the combined standard error, in eV and kcal/mol
    (:func:`combine`: the one NaN rule). ``post_break_work_delta`` compares the work gained
    after the break; ``work_to_snap_delta_kcal`` and ``work_in_snap_delta_kcal`` split ΔE_a (of
    the means) into the work that stretched the chain up to the snap and the work while the bond
    snaps (:func:`read_replica`; NaN where a record lacks them)."""
    d = combine(nnp["ea_mean"], nnp["ea_stderr"], ref["ea_mean"], ref["ea_stderr"])
    post = nnp.get("post_break_work_mean", math.nan) - ref.get("post_break_work_mean", math.nan)

    def snap_delta(key: str) -> float:
        return (nnp.get(key, math.nan) - ref.get(key, math.nan)) * KCAL_MOL_PER_EV
    return {
        "delta_ea": d.value,
        "delta_ea_stderr": d.partial_stderr,
        "abs_delta_ea_kcal": abs(d.value) * KCAL_MOL_PER_EV,
        "delta_ea_kcal": d.value * KCAL_MOL_PER_EV,
        "delta_ea_stderr_kcal": d.partial_stderr * KCAL_MOL_PER_EV,
        "delta_stderr_defined": d.defined,
        "post_break_work_delta_kcal": post * KCAL_MOL_PER_EV,
        "work_to_snap_delta_kcal": snap_delta("work_to_snap_mean"),
        "work_in_snap_delta_kcal": snap_delta("work_in_snap_mean"),
    }


def barrier_of_files(paths: Sequence, allow_empty: bool = False, start_positions=None) -> dict:
    """:func:`barrier_record` over SMD replica files, each read up to its break.
    A replica that stopped before the pull began (no frames, or only its relaxation's:
    :func:`pull_began`) has no barrier: it is left out and listed in ``failed_replicas``
    (its stop reason in ``failed_reasons``); with ``allow_empty`` False (reference runs) it is
    an error instead. A replica in which nothing broke is counted in ``unbroken``."""
    replicas, reasons, failed, failed_reasons = [], [], [], []
    for p in paths:
        fr = read_frames(p)
        reasons.append(fr.attrs.get("stop_reason", "unknown"))
        if not pull_began(fr):
            if not allow_empty:
                raise ValueError(f"{p}: SMD replica stopped before the pull ({reasons[-1]}; {len(fr)} relaxation "
                                 "frames); cannot compute its barrier")
            failed.append(str(p))
            failed_reasons.append(reasons[-1])
            continue
        replicas.append(read_replica(fr, start_positions, name=Path(p).stem))
    rec = barrier_record(replicas)
    rec["stop_reasons"] = reasons
    rec["replicas"] = [str(p) for p in paths]
    rec["failed_replicas"] = failed
    rec["failed_reasons"] = failed_reasons
    return rec
