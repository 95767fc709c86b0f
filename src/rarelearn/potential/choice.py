"""Which iteration of a campaign becomes the potential (see :mod:`rarelearn.potential`)."""
from __future__ import annotations

import math
from typing import Sequence

from ..jsonio import read_json
from ..learning.evaluation import breaks_other_bond, stop_rule_met


# ---------------------------------------------------------------------- which iteration
def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _score(ev: dict, stop: dict) -> float:
    """The error the "best" rule ranks by (smaller is better; inf when missing)."""
    observable = stop.get("observable", "both")
    smd, cogef = ev.get("abs_delta_ea_kcal"), ev.get("cogef_abs_delta_e_max_kcal")
    if observable == "smd":
        return float(smd) if _finite(smd) else math.inf
    if observable == "cogef":
        return float(cogef) if _finite(cogef) else math.inf
    if not (_finite(smd) and _finite(cogef)):
        return math.inf
    return max(smd / float(stop.get("target_kcal", 1.0)), cogef / float(stop.get("cogef_target_kcal", 1.0)))


def choose_iteration(evaluations: Sequence[dict], stop: dict | None) -> dict:
    """Which iteration's committee is the potential (the rule in the module docstring).

    Parameters
    ----------
    evaluations : the campaign's evaluation records (``results/iter_NNN/evaluation.json``),
        in iteration order, up to the last one evaluated
    stop : the ``campaign.stop`` section

    Returns
    -------
    dict: ``iteration`` (int), ``rule`` ("converged", "best" or "lowest unseen MAE"),
    ``reason`` (one sentence), ``final_iteration`` (int), ``scores`` (per iteration, the
    figure ranked; None when missing)
    """
    if not evaluations:
        raise ValueError("no evaluated iteration: the campaign has not produced a potential yet")
    stop = dict(stop or {})
    final = int(evaluations[-1]["iteration"])
    observable = stop.get("observable", "both")
    scores = [_score(ev, stop) for ev in evaluations]
    out = {"final_iteration": final, "observable": observable,
           "scores": [s if math.isfinite(s) else None for s in scores]}
    if stop_rule_met(evaluations, stop):
        return {**out, "iteration": final, "rule": "converged",
                "reason": f"the stop rule ({observable}) holds after iteration {final}"}
    if any(math.isfinite(s) for s in scores):
        # smallest score; an iteration that breaks another bond than the reference's after
        # every one with a figure that breaks its bond (its error is that of another event),
        # one without the figure last; among equals the later iteration
        other = [breaks_other_bond(ev, observable) for ev in evaluations]
        k = min(range(len(scores)), key=lambda i: (not math.isfinite(scores[i]), other[i], scores[i], -i))
        what = {"smd": "SMD |ΔE_a|", "cogef": "COGEF |ΔE_max|",
                "both": "max(SMD |ΔE_a| / target, COGEF |ΔE_max| / target)"}.get(observable, observable)
        why = "the stop rule is disabled" if not stop.get("enabled") else "the stop rule was not met"
        ranked = (f", iterations {', '.join(str(evaluations[i]['iteration']) for i in range(len(other)) if other[i])} "
                  "breaking another bond than the reference's ranked last" if any(other) else "")
        return {**out, "iteration": int(evaluations[k]["iteration"]), "rule": "best",
                "reason": f"{why}: the smallest {what} of iterations 0-{final}{ranked}"}
    maes = [ev.get("unseen_energy_mae") for ev in evaluations]
    k = min(range(len(maes)), key=lambda i: (maes[i] if _finite(maes[i]) else math.inf, -i))
    return {**out, "iteration": int(evaluations[k]["iteration"]), "rule": "lowest unseen MAE",
            "reason": f"no iteration has a {observable} barrier error: the lowest energy MAE on unseen frames"}


def potential_sources(evaluation_paths: Sequence, stop: dict | None, results="results") -> dict:
    """The files the potential is built from, by :func:`choose_iteration` over the
    evaluations (the workflow's ``potential`` rule asks this for its inputs).

    Returns
    -------
    dict of paths (str): ``evaluations`` (list), ``ensemble``, ``best``, ``data`` (the data
    set the chosen iteration trained on), ``uq`` (its UQ file), ``final_uq`` (the last
    iteration's), ``molecule``, ``reference_barrier``, ``reference_cogef``; and
    ``choice`` (the dict of :func:`choose_iteration`).
    """
    evaluation_paths = [str(p) for p in evaluation_paths]
    choice = choose_iteration([read_json(p) for p in evaluation_paths], stop)
    i, final = choice["iteration"], choice["final_iteration"]
    it = f"{results}/iter_{i:03d}"
    return {
        "evaluations": evaluation_paths,
        "ensemble": f"{it}/ensemble.pt",
        "best": f"{it}/best.json",
        "data": f"{results}/iter_000/dataset.h5" if i == 0 else f"{results}/iter_{i - 1:03d}/merged.h5",
        "uq": f"{it}/uq.h5",
        "final_uq": f"{results}/iter_{final:03d}/uq.h5",
        "molecule": f"{results}/reference/molecule.xyz",
        "reference_barrier": f"{results}/reference/barrier.json",
        "reference_cogef": f"{results}/reference/cogef.json",
        "choice": choice,
    }
