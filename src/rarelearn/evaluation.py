"""Evaluation of an iteration against the reference, and the campaign's stop rule.

Two observables of the same event are compared:

* **SMD**: E_a = max W read up to the break (:func:`rarelearn.barrier.read_replica`),
  a mean over replicas with its standard error; one replica scatters by ~4 kcal/mol.
* **COGEF**: the maximum E_max of the constrained-geometry profile
  (:mod:`rarelearn.cogef`), deterministic.

Energies in eV inside; the kcal/mol figures written next to them are for reports.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .barrier import summarize
from .units import KCAL_MOL_PER_EV

__all__ = ["barrier_record", "delta_record", "cogef_comparison", "stop_rule_met", "STOP_OBSERVABLES"]

STOP_OBSERVABLES = ("cogef", "smd", "both")


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def barrier_record(replicas: Sequence[dict]) -> dict:
    """E_a statistics over SMD replica records (:func:`rarelearn.barrier.read_replica`).

    Only replicas that broke carry a barrier; the others are counted (``unbroken``) and
    named (``unbroken_replicas``), never read off their last frame. Mean, standard error
    and std follow :func:`rarelearn.barrier.summarize` (NaN for fewer than two values).

    Returns
    -------
    dict: ``ea_mean``, ``ea_stderr``, ``ea_std``, ``n_replicas`` (replicas with a barrier),
    ``ea_values``, ``break_distance_mean``/``break_distances`` (spring distance at the break,
    Å), ``ea_distance_mean`` (spring distance at max W), ``post_break_work_mean``/``_stderr``
    (eV), ``post_break_force_mean`` (eV/Å), ``unbroken``, ``unbroken_replicas``,
    ``per_bond`` (bond label -> mean, stderr, n of its E_a), ``replica_records``.
    """
    with_barrier = [r for r in replicas if r.get("broke") and _finite(r.get("ea"))]
    ea = summarize([r["ea"] for r in with_barrier])
    post_w = summarize([r["post_break_work"] for r in with_barrier])
    post_f = summarize([r["post_break_force"] for r in with_barrier])
    per_bond: dict[str, dict] = {}
    for label in sorted({r["broken_label"] for r in with_barrier}):
        s = summarize([r["ea"] for r in with_barrier if r["broken_label"] == label])
        per_bond[label] = {"ea_mean": s.mean, "ea_stderr": s.stderr, "n": s.n}
    unbroken = [r["replica"] for r in replicas if r.get("n_frames", 0) > 0 and not r.get("broke")]
    dists = [r["break_distance"] for r in with_barrier]
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
        "unbroken": len(unbroken),
        "unbroken_replicas": unbroken,
        "per_bond": per_bond,
        "replica_records": list(replicas),
    }


def delta_record(nnp: dict, ref: dict) -> dict:
    """ΔE_a = mean(NNP) − mean(reference) with the combined standard error, in eV and kcal/mol.

    A side with one replica has no standard error; it then counts as 0 in the combination
    (and ``delta_stderr_defined`` is False). A side with no barrier at all (every replica
    unbroken or blown up) gives NaN for ΔE_a *and* its error, never a finite error beside
    a NaN difference. ``post_break_work_delta`` compares the work gained after the break.
    """
    se_n, se_r = nnp["ea_stderr"], ref["ea_stderr"]
    delta = nnp["ea_mean"] - ref["ea_mean"]
    if not math.isfinite(delta):
        defined, se = False, math.nan
    else:
        defined = not (math.isnan(se_n) or math.isnan(se_r))
        se = math.sqrt((0.0 if math.isnan(se_n) else se_n) ** 2 + (0.0 if math.isnan(se_r) else se_r) ** 2)
    post = nnp.get("post_break_work_mean", math.nan) - ref.get("post_break_work_mean", math.nan)
    return {
        "delta_ea": delta,
        "delta_ea_stderr": se,
        "abs_delta_ea_kcal": abs(delta) * KCAL_MOL_PER_EV,
        "delta_ea_kcal": delta * KCAL_MOL_PER_EV,
        "delta_ea_stderr_kcal": se * KCAL_MOL_PER_EV,
        "delta_stderr_defined": defined,
        "post_break_work_delta_kcal": post * KCAL_MOL_PER_EV,
    }


def cogef_comparison(nnp: dict, ref: dict) -> dict:
    """The potential's COGEF profile against the reference's (records of
    :meth:`rarelearn.cogef.CogefProfile.summary`, with ``extension``/``energy`` arrays).

    Returns
    -------
    dict: ``cogef_delta_e_max`` (eV) and ``cogef_abs_delta_e_max_kcal``, NaN when either
    side did not break within its scan (its maximum is then only a lower bound);
    ``cogef_delta_f_max`` (eV/Å); ``cogef_rmse_to_break_kcal``: RMS difference of the two
    profiles E(Δ) on the reference's images up to the earlier of the two breaks (the
    potential's profile interpolated linearly); ``cogef_same_bond``: both broke the same
    atom pair; the post-break rises of both (eV).
    """
    both = bool(nnp.get("broke")) and bool(ref.get("broke"))
    d_e = nnp["e_max"] - ref["e_max"] if both else math.nan
    d_f = nnp["f_max"] - ref["f_max"]
    x_r, e_r = np.asarray(ref["extension"], float), np.asarray(ref["energy"], float)
    x_n, e_n = np.asarray(nnp["extension"], float), np.asarray(nnp["energy"], float)
    upto = min(ref["break_extension"] if ref.get("broke") else x_r.max(),
               nnp["break_extension"] if nnp.get("broke") else x_n.max())
    keep = (x_r < upto) & (x_r <= x_n.max())
    rmse = (float(np.sqrt(np.mean((np.interp(x_r[keep], x_n, e_n) - e_r[keep]) ** 2))) * KCAL_MOL_PER_EV
            if keep.any() else math.nan)
    return {
        "cogef_delta_e_max": d_e,
        "cogef_delta_e_max_kcal": d_e * KCAL_MOL_PER_EV,
        "cogef_abs_delta_e_max_kcal": abs(d_e) * KCAL_MOL_PER_EV,
        "cogef_delta_f_max": d_f,
        "cogef_rmse_to_break_kcal": rmse,
        "cogef_same_bond": both and list(nnp["broken_bond"]) == list(ref["broken_bond"]),
        "cogef_post_break_rise": nnp.get("post_break_rise", math.nan),
        "ref_cogef_post_break_rise": ref.get("post_break_rise", math.nan),
    }


def _smd_met(ev: dict, stop: dict) -> bool:
    a, se = ev.get("abs_delta_ea_kcal"), ev.get("delta_ea_stderr_kcal")
    return _finite(a) and _finite(se) and a < stop["target_kcal"] and se <= stop["max_stderr_kcal"]


def _cogef_met(ev: dict, stop: dict) -> bool:
    a = ev.get("cogef_abs_delta_e_max_kcal")
    return _finite(a) and a < stop["cogef_target_kcal"]


def stop_rule_met(history: Sequence[dict], stop: dict) -> bool:
    """Whether the campaign has converged; always False when the rule is disabled.

    ``stop.observable`` picks what must hold in each of the last ``stop.consecutive``
    evaluations: ``cogef``: |ΔE_max| < ``cogef_target_kcal`` (both profiles broke);
    ``smd``: |ΔE_a| (read up to the break) < ``target_kcal`` with a standard error
    ≤ ``max_stderr_kcal``; ``both``: both. A missing or non-finite figure (every replica
    blown up or unbroken, a profile that never broke) never counts as converged.
    """
    if not stop or not stop.get("enabled", False):
        return False
    n = int(stop.get("consecutive", 1))
    if len(history) < n:
        return False
    observable = stop.get("observable", "smd")
    if observable not in STOP_OBSERVABLES:
        raise ValueError(f"campaign.stop.observable: {observable!r} is not one of {', '.join(STOP_OBSERVABLES)}")
    checks = {"cogef": (_cogef_met,), "smd": (_smd_met,), "both": (_cogef_met, _smd_met)}[observable]
    return all(check(ev, stop) for ev in history[-n:] for check in checks)
