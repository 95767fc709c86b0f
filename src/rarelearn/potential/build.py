"""``results/potential/``: the chosen committee, its TorchScript export and its card."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Sequence

import torch

from ..atomic import atomic_path
from ..chem.molecules import load_prepared_molecule
from ..dataset import read_frames
from ..jsonio import read_json, write_json
from ..models.committee import ModelError
from ..units import ev_to_kcal

log = logging.getLogger("rarelearn")
from .card import _num, _sha256, _uq_thresholds, _write_text, build_card, card_markdown, card_rst
from .choice import choose_iteration
from .spread import trained_range
from ..models.export import export_potential


def build_potential(evaluation_paths: Sequence, stop: dict | None, ensemble, best_json, data, uq, final_uq,
                    molecule_xyz, labeller_cfg: dict, out_dir, smd_cfg: dict | None = None,
                    reference_barrier=None, reference_cogef=None) -> dict:
    """Write ``results/potential/`` (:data:`POTENTIAL_FILES`): the chosen committee, its
    TorchScript export (ANI), and the model card.

    Parameters
    ----------
    evaluation_paths : the campaign's evaluation.json files, in iteration order
    stop : the ``campaign.stop`` section (the choice follows :func:`choose_iteration`)
    ensemble, best_json, data, uq : the chosen iteration's committee, best member, training
        set and UQ file (as :func:`potential_sources` names them)
    final_uq : the last iteration's UQ file (the threshold the campaign ended with)
    molecule_xyz : the prepared molecule (pulled groups in its info)
    labeller_cfg, smd_cfg : the config's ``labeller`` and ``smd`` sections
    out_dir : output folder
    reference_barrier, reference_cogef : the reference's barrier.json and cogef.json (optional)

    Returns
    -------
    the card (dict)
    """
    from ..models.files import load_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    evaluations = [read_json(p) for p in evaluation_paths]
    choice = choose_iteration(evaluations, stop)
    chosen = next(ev for ev in evaluations if int(ev["iteration"]) == choice["iteration"])
    model = load_model(ensemble)
    best_rec = read_json(best_json)
    best = int(best_rec["best_member"])
    atoms, g1, g2 = load_prepared_molecule(molecule_xyz)
    model.check_elements(atoms.numbers)
    frames = read_frames(data)
    trained = trained_range(model.to(dtype=torch.float64), frames, reference_positions=atoms.positions,
                            pulled=(g1[0], g2[0]))
    files = committee_files(model, ensemble, out_dir, best, choice["iteration"])
    reference = reference_record(reference_barrier, reference_cogef)
    card = build_card(choice=choice, evaluation=chosen, model=model, best_member=best, member=best,
                      best_rule=best_rec.get("rule", "validation"), frames=frames,
                      trained=trained, labeller_cfg=labeller_cfg, smd_cfg=smd_cfg, molecule=atoms,
                      pulled=(g1[0], g2[0]), uq=_uq_thresholds(uq), final_uq=_uq_thresholds(final_uq),
                      reference=reference, files=files,
                      source_files={"ensemble": str(ensemble), "data": str(data), "evaluation": [str(p) for p in evaluation_paths]})
    card["model"]["groups"] = {"group1": [int(x) for x in g1], "group2": [int(x) for x in g2]}
    write_card(card, out_dir)
    log.info("potential: iteration %d (%s: %s), member %d, %d training frames; %s", choice["iteration"],
             choice["rule"], choice["reason"], best, len(frames), ", ".join(f"{k} {v['sha256'][:12]}"
                                                                            for k, v in files.items()))
    return card


def committee_files(model, ensemble, out_dir: Path, best: int, iteration: int) -> dict:
    """Copy the committee to ``out_dir/ensemble.pt`` and export its best member to
    ``potential.ts`` (ANI; a SchNet committee gets a one-line note instead); their SHA-256
    and sizes, as the card records them."""
    ens_out = out_dir / "ensemble.pt"
    with atomic_path(ens_out) as tmp:
        shutil.copyfile(ensemble, tmp)
    ts_out = out_dir / "potential.ts"
    files = {"ensemble.pt": {"sha256": _sha256(ens_out), "bytes": ens_out.stat().st_size}}
    try:
        export_potential(model, ts_out, member=best, extra={"iteration": iteration})
        files["potential.ts"] = {"sha256": _sha256(ts_out), "bytes": ts_out.stat().st_size}
    except ModelError as exc:  # SchNet: no TorchScript; say so on the card
        ts_out.unlink(missing_ok=True)
        _write_text(ts_out, f"no TorchScript export: {exc}\n")
    return files


def write_card(card: dict, out_dir: Path) -> None:
    """``card.md``, ``card.rst`` and ``card.json`` (last: the file the rule's outputs end with)."""
    _write_text(out_dir / "card.md", card_markdown(card))
    _write_text(out_dir / "card.rst", card_rst(card))
    write_json(out_dir / "card.json", card)


def reference_record(reference_barrier=None, reference_cogef=None) -> dict:
    """What the card says of the reference: its SMD barrier (how precise, from how many
    replicas in how many rounds) and COGEF maximum."""
    reference = {}
    if reference_barrier is not None:
        rb = read_json(reference_barrier)
        reference["smd_ea_eV"] = _num(rb.get("ea_mean"))
        reference["smd_ea_stderr_eV"] = _num(rb.get("ea_stderr"))
        reference["smd_replicas"] = rb.get("n_replicas")
        # how many replicas ran, in how many rounds, against which target (adaptive reference)
        rounds = rb.get("rounds") or {}
        reference["smd_replicas_run"] = rb.get("replicas_run")
        reference["smd_ea_stderr_kcal"] = _num(ev_to_kcal(reference["smd_ea_stderr_eV"])) \
            if reference["smd_ea_stderr_eV"] is not None else None
        reference["smd_rounds"] = rounds.get("count")
        reference["smd_target_stderr_kcal"] = rounds.get("target_stderr_kcal")
        reference["smd_rounds_reason"] = rounds.get("reason")
    if reference_cogef is not None:
        rc = read_json(reference_cogef)
        reference["cogef_e_max_eV"] = _num(rc.get("e_max"))
        reference["cogef_broken_bond"] = rc.get("broken_label")
    return reference
