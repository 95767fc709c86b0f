"""The potential of a campaign of several molecules (``molecules:``): one committee, one
card with a section per molecule.

Which iteration (:func:`choose_family_iteration`): the rules of
:func:`rarelearn.potential.choose_iteration` with each iteration judged by its *worst*
trained molecule: "converged" when the stop rule holds for every trained molecule after the
last iteration; else "best", the smallest worst-molecule error in the stop rule's
observable (an iteration where any trained molecule lacks the figure ranks after every one
with it, one where any breaks another bond than its reference after those that do not);
else the lowest mean energy MAE on unseen frames. Held-out molecules (weight 0) are
reported, never chosen by.

The card (``card.json``) keeps the keys the calculator reads (``model``, ``files``,
``uncertainty``: its trusted-range bounds are the largest of the trained molecules') and
gains ``molecules``: per molecule its name, whether it was held out, and what a
one-molecule card says of its molecule (``molecule``, ``dataset``, ``errors``,
``reference``, ``trained_range``, ``uncertainty``).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..chem.molecules import load_prepared_molecule
from ..dataset import Frames, read_frames
from ..jsonio import read_json
from ..learning.evaluation import breaks_other_bond, stop_rule_met
from .build import committee_files, reference_record, write_card
from .card import _uq_thresholds, build_card
from .choice import _finite, _score
from .spread import trained_range

__all__ = ["choose_family_iteration", "build_family_potential"]

log = logging.getLogger("rarelearn")

#: What a molecule's section of a family card holds (the rest is the family's).
MOLECULE_KEYS = ("molecule", "dataset", "errors", "reference", "trained_range", "uncertainty")


def choose_family_iteration(histories: dict, trained: Sequence[str], stop: dict | None) -> dict:
    """Which iteration's committee is a family's potential (the rule in the module docstring).

    Parameters
    ----------
    histories : molecule name -> its evaluation records in iteration order
    trained : the names of the molecules trained on (the choice looks at these only)
    stop : the ``campaign.stop`` section

    Returns
    -------
    dict as :func:`rarelearn.potential.choose_iteration` returns, with ``worst`` (per
    iteration, the trained molecule with the largest figure; None where one lacks it)
    """
    names = list(trained)
    if not names:
        raise ValueError("no trained molecule to choose an iteration by")
    n = min(len(histories[m]) for m in names)
    if n == 0:
        raise ValueError("no evaluated iteration: the campaign has not produced a potential yet")
    stop = dict(stop or {})
    observable = stop.get("observable", "both")
    its = [[histories[m][k] for m in names] for k in range(n)]
    final = int(its[-1][0]["iteration"])
    per = [[_score(ev, stop) for ev in evs] for evs in its]
    scores = [max(s) for s in per]
    out = {"final_iteration": final, "observable": observable,
           "scores": [s if math.isfinite(s) else None for s in scores],
           "worst": [names[int(np.argmax(s))] if math.isfinite(max(s)) else None for s in per]}
    if all(stop_rule_met(histories[m][:n], stop) for m in names):
        return {**out, "iteration": final, "rule": "converged",
                "reason": f"the stop rule ({observable}) holds for every trained molecule after iteration {final}"}
    if any(math.isfinite(s) for s in scores):
        other = [any(breaks_other_bond(ev, observable) for ev in evs) for evs in its]
        k = min(range(n), key=lambda i: (not math.isfinite(scores[i]), other[i], scores[i], -i))
        why = "the stop rule is disabled" if not stop.get("enabled") else "the stop rule was not met"
        return {**out, "iteration": int(its[k][0]["iteration"]), "rule": "best",
                "reason": f"{why}: the smallest {observable} error of its worst trained molecule over iterations "
                          f"0-{final} ({out['worst'][k]}: {scores[k]:.2f})"}
    maes = [np.mean([ev["unseen_energy_mae"] for ev in evs if _finite(ev.get("unseen_energy_mae"))] or [math.inf])
            for evs in its]
    k = min(range(n), key=lambda i: (maes[i], -i))
    return {**out, "iteration": int(its[k][0]["iteration"]), "rule": "lowest unseen MAE",
            "reason": f"no iteration has a {observable} barrier error for every trained molecule: the lowest mean "
                      "energy MAE on unseen frames"}


def _untrained_range(why: str) -> dict:
    """The trained range of a molecule the committee did not see (``why`` says so on the card)."""
    return {"frames": 0, "energy_std": {"max": None}, "force_std": {"max": None}, "untrained": why}


def build_family_potential(evaluations: dict, trained: Sequence[str], stop: dict | None, ensemble, best_json,
                           data: dict, uq: dict, final_uq: dict, molecules: dict, labeller_cfg: dict, out_dir,
                           smd_cfg: dict | None = None, reference_barriers: dict | None = None,
                           reference_cogefs: dict | None = None, pull_steps: dict | None = None) -> dict:
    """Write a family's ``results/potential/`` (the files of :func:`build_potential`).

    Parameters
    ----------
    evaluations : molecule name -> its evaluation.json files in iteration order (every molecule)
    trained : names of the molecules trained on
    ensemble, best_json : the chosen iteration's committee and best member
    data, uq, final_uq : trained molecule name -> the data set file the chosen iteration
        trained on, the chosen iteration's UQ file, the last iteration's UQ file
    molecules : molecule name -> its prepared molecule file
    reference_barriers, reference_cogefs : molecule name -> the reference's barrier.json, cogef.json
    pull_steps : molecule name -> the steps its pulls ran (a long alkane's more than
        ``smd_cfg``'s); each molecule's section has its own ``smd_protocol``

    Returns
    -------
    the card (dict)
    """
    from ..models.files import load_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    histories = {m: [read_json(p) for p in paths] for m, paths in evaluations.items()}
    choice = choose_family_iteration(histories, trained, stop)
    model = load_model(ensemble)
    best_rec = read_json(best_json)
    best = int(best_rec["best_member"])
    files = committee_files(model, ensemble, out_dir, best, choice["iteration"])
    sections = []
    for name, xyz in molecules.items():
        atoms, g1, g2 = load_prepared_molecule(xyz)
        model.check_elements(atoms.numbers)
        chosen = next(ev for ev in histories[name] if int(ev["iteration"]) == choice["iteration"])
        held_out = name not in trained
        if held_out:
            frames = Frames.empty(atoms.numbers)
            tr = _untrained_range("held out: a test of how the potential transfers")
            thresholds = final = {"mean": None, "per_replica": {}}
        else:
            frames = read_frames(data[name])
            tr = (trained_range(model.to(dtype=torch.float64), frames, reference_positions=atoms.positions,
                                pulled=(g1[0], g2[0])) if frames.ok.any() else
                  _untrained_range("none yet: the chosen iteration trained on no frame of it (no MD set; its "
                                   "selections came later)"))
            thresholds, final = _uq_thresholds(uq[name]), _uq_thresholds(final_uq[name])
        reference = reference_record((reference_barriers or {}).get(name), (reference_cogefs or {}).get(name))
        card = build_card(choice=choice, evaluation=chosen, model=model, best_member=best, member=best,
                          best_rule=best_rec.get("rule", "validation"), frames=frames, trained=tr,
                          labeller_cfg=labeller_cfg, molecule=atoms,
                          smd_cfg=smd_cfg and {**smd_cfg, **({"pull_steps": pull_steps[name]} if pull_steps else {})},
                          pulled=(g1[0], g2[0]), uq=thresholds, final_uq=final, reference=reference, files=files,
                          source_files={"ensemble": str(ensemble)})
        sections.append({"name": name, "held_out": held_out, "smd_protocol": card["smd_protocol"],
                         **{k: card[k] for k in MOLECULE_KEYS}})
    card = {k: v for k, v in card.items() if k not in MOLECULE_KEYS}
    card["smd_protocol"] = {k: v for k, v in (smd_cfg or {}).items() if k != "batch"}   # the campaign's section
    card["sources"] = {"ensemble": str(ensemble), "data": {m: str(p) for m, p in data.items()},
                       "evaluation": {m: [str(p) for p in paths] for m, paths in evaluations.items()}}
    card["uncertainty"] = _family_uncertainty([s for s in sections if not s["held_out"]], choice)
    card["molecules"] = sections
    write_card(card, out_dir)
    log.info("potential of %d molecules: iteration %d (%s: %s), member %d; %s", len(sections), choice["iteration"],
             choice["rule"], choice["reason"], best, ", ".join(f"{k} {v['sha256'][:12]}" for k, v in files.items()))
    return card


def _family_uncertainty(trained_sections: list[dict], choice: dict) -> dict:
    """The calculator's trusted-range bounds over the family: the largest spread on any
    trained molecule's training set; the UQ thresholds per molecule."""
    first = trained_sections[0]["uncertainty"]

    def largest(key):
        vals = [s["uncertainty"][key] for s in trained_sections if _finite(s["uncertainty"][key])]
        return max(vals) if vals else None

    return {
        "energy_std_definition": first["energy_std_definition"],
        "force_std_definition": first["force_std_definition"],
        "uq_threshold_eV": None,
        "uq_threshold_per_molecule_eV": {s["name"]: s["uncertainty"]["uq_threshold_eV"] for s in trained_sections},
        "uq_threshold_iteration": int(choice["final_iteration"]),
        "warn_energy_std_above_eV": largest("warn_energy_std_above_eV"),
        "warn_force_std_above_eV_per_A": largest("warn_force_std_above_eV_per_A"),
        "warn_definition": "the largest spread on any trained molecule's training set",
    }
