"""Evaluation of an iteration against the reference, and the campaign's stop rule.

Energies in eV inside; the kcal/mol figures written next to them are for reports.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .units import KCAL_MOL_PER_EV

__all__ = ["barrier_record", "delta_record", "stop_rule_met"]


def barrier_record(values_ev: Sequence[float], break_distances: Sequence[float]) -> dict:
    """Mean, standard error, std and every replica's value of E_a (eV) and break distance (Å)."""
    v = np.asarray(values_ev, dtype=float)
    d = np.asarray(break_distances, dtype=float)
    n = len(v)
    std = float(v.std(ddof=1)) if n > 1 else float("nan")
    return {
        "ea_mean": float(v.mean()) if n else float("nan"),
        "ea_stderr": std / math.sqrt(n) if n > 1 else float("nan"),
        "ea_std": std,
        "n_replicas": n,
        "ea_values": [float(x) for x in v],
        "break_distance_mean": float(d.mean()) if n else float("nan"),
        "break_distances": [float(x) for x in d],
    }


def delta_record(nnp: dict, ref: dict) -> dict:
    """ΔE_a = mean(NNP) − mean(reference) with the combined standard error, in eV and kcal/mol.

    A side with one replica has no standard error; it then counts as 0 in the combination
    (and ``delta_stderr_defined`` is False).
    """
    se_n, se_r = nnp["ea_stderr"], ref["ea_stderr"]
    defined = not (math.isnan(se_n) or math.isnan(se_r))
    se = math.sqrt((0.0 if math.isnan(se_n) else se_n) ** 2 + (0.0 if math.isnan(se_r) else se_r) ** 2)
    delta = nnp["ea_mean"] - ref["ea_mean"]
    return {
        "delta_ea": delta,
        "delta_ea_stderr": se,
        "abs_delta_ea_kcal": abs(delta) * KCAL_MOL_PER_EV,
        "delta_ea_kcal": delta * KCAL_MOL_PER_EV,
        "delta_ea_stderr_kcal": se * KCAL_MOL_PER_EV,
        "delta_stderr_defined": defined,
    }


def stop_rule_met(history: Sequence[dict], stop: dict) -> bool:
    """True when the last ``stop.consecutive`` evaluations all have |ΔE_a| < target and
    standard error ≤ bound (both kcal/mol). Always False when the rule is disabled."""
    if not stop or not stop.get("enabled", False):
        return False
    n = int(stop.get("consecutive", 1))
    if len(history) < n:
        return False
    for ev in history[-n:]:
        if not (ev["abs_delta_ea_kcal"] < stop["target_kcal"]
                and ev["delta_ea_stderr_kcal"] <= stop["max_stderr_kcal"]):
            return False
    return True
