"""Evaluation steps: an iteration against the reference (barrier, COGEF, errors on unseen
frames, the bond report, wall time from the benchmark files it is given), and the
campaign's summary table."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..chem.barrier import barrier_of_files, delta_record
from ..chem.molecules import load_prepared_molecule
from ..dataset import Frames, read_frames
from ..atomic import atomic_path
from ..jsonio import read_json, write_json
from ..learning.evaluation import no_barrier_reason, smd_bond_comparison, smd_bonds_text
from .common import log
from .sample import _start_positions

__all__ = ["wall_seconds", "bond_flags", "evaluate_step", "summary_step", "family_summary_step", "SUMMARY_COLUMNS",
           "COGEF_KEYS"]


def wall_seconds(benchmark_files: Sequence) -> float:
    """Total wall time (s) in Snakemake benchmark files (first column of the second line);
    files that are missing or unreadable count 0."""
    total = 0.0
    for f in benchmark_files:
        try:
            with open(f) as fh:
                lines = fh.read().splitlines()
            total += float(lines[1].split("\t")[0])
        except (IndexError, ValueError, OSError):
            continue
    return total


def bond_flags(molecule_xyz, replica_paths: Sequence) -> list[dict]:
    """Per replica: the bond/fragment report of the SMD (:func:`rarelearn.chem.breaks.bond_report`
    on the skeleton bonds, any elements; the paper's SchNet failure mode): more than two
    pieces, or a bond other than the stretched one broken."""
    from ..chem.breaks import bond_report

    atoms, g1, g2 = load_prepared_molecule(molecule_xyz)
    out = []
    for p in replica_paths:
        fr = read_frames(p)
        if len(fr) == 0:
            out.append({"replica": Path(p).stem, "n_frames": len(fr)})
            continue
        rep = bond_report(fr.numbers, fr.positions, atoms.positions, pulled=(g1[0], g2[0]))
        out.append({"replica": Path(p).stem, **rep["summary"]})
    return out


COGEF_KEYS = ("e_max", "extension_at_max", "f_max", "broke", "broken_label", "break_extension",
              "post_break_rise")


def _same_place(molecule_xyz, pull=None):
    """Whether two bonds of the molecule sit at the same place along its load path
    (:func:`rarelearn.chem.breaks.bond_position`) between the atoms ``pull`` (default: the
    first atom of each pulled group); None without the molecule."""
    if molecule_xyz is None:
        return None
    from ..chem.breaks import bond_position
    from ..chem.molecules import load_prepared_molecule

    mol, g1, g2 = load_prepared_molecule(molecule_xyz)
    pull = (g1[0], g2[0]) if pull is None else pull
    return lambda a, b: (bond_position(mol.numbers, mol.positions, pull, a)
                         == bond_position(mol.numbers, mol.positions, pull, b))


def replica_plan_step(cogef_json, reference_cogef_json, molecule_xyz, plan_cfg: dict, out_json) -> dict:
    """How many SMD replicas the iteration's barrier is read from (``evaluation.close_replicas``,
    :func:`rarelearn.learning.evaluation.replica_plan`): its best member's COGEF profile
    against the reference's decides. ``plan_cfg``: ``replicas`` (the iteration's pulls),
    ``close_replicas``, ``close_kcal``. Writes the plan (JSON) whole or not at all."""
    from ..learning.evaluation import cogef_comparison, replica_plan

    c_nnp, c_ref = read_json(cogef_json), read_json(reference_cogef_json)
    comparison = cogef_comparison(c_nnp, c_ref, _same_place(molecule_xyz, c_ref["pull"]))
    plan = replica_plan(comparison, int(plan_cfg["replicas"]), int(plan_cfg["close_replicas"]),
                        float(plan_cfg["close_kcal"]))
    plan.update({"nnp_cogef_broken_label": c_nnp.get("broken_label"), "ref_cogef_broken_label": c_ref.get("broken_label")})
    write_json(out_json, plan)
    log.info("SMD replicas: %s", plan["reason"])
    return plan


def _members_note(rec: dict) -> str:
    """`` (every member: …)``: every member's COGEF ΔE_max, when the evaluation has them."""
    from ..learning.evaluation import members_text

    text = members_text([r["delta_e_max_kcal"] for r in rec.get("cogef_members") or []])
    return f" ({text})" if text else ""


# What a held-out molecule (never trained on, no merge) has merged.
_NOTHING_MERGED = {"selected": 0, "augmented": 0, "labeller_steps": 0, "failed_labels": 0, "screened_labels": 0,
                   "added": 0, "total_frames": 0, "label_seconds": 0.0, "labelled": None}


def evaluate_step(iteration: int, replica_paths: Sequence, reference_json, unseen_paths: Sequence,
                  ensemble_path, best_json, member_infos: Sequence, uq_path, merge_json, out,
                  out_predictions=None, molecule_xyz=None, cogef_json=None, reference_cogef_json=None,
                  reference_cogef_frames=None, benchmark_files: Sequence = (),
                  member_cogef_jsons: Sequence = ()) -> dict:
    """ΔE_a of this iteration's SMD replicas against the reference, both read up to the break,
    with the work and force after the break; the COGEF comparison when both profiles are
    given, and every member's against the reference (``member_cogef_jsons``,
    :func:`committee_cogef`); errors on unseen frames (the reference SMD replicas ``unseen_paths`` and, when
    given, the reference's COGEF images ``reference_cogef_frames``). ``wall_seconds`` is the
    total of the iteration's ``benchmark_files`` (:func:`wall_seconds`). ``merge_json`` None:
    a molecule held out of training (``held_out`` true, nothing selected or merged);
    ``uq_path`` is not read (an input of the workflow's job only)."""
    from ..learning.evaluation import cogef_comparison, committee_cogef
    from ..models.files import load_model
    from ..learning.errors import evaluate_errors
    from ..learning.uq import member_energies

    nnp = barrier_of_files(replica_paths, allow_empty=True, start_positions=_start_positions(molecule_xyz))
    ref = read_json(reference_json)
    rec = {"iteration": iteration}
    rec.update({f"nnp_{k}": v for k, v in nnp.items() if k != "replicas"})
    rec.update({f"ref_{k}": ref.get(k) for k in ("ea_mean", "ea_stderr", "n_replicas", "replicas_run",
                                                  "break_distance_mean", "post_break_work_mean",
                                                  "post_break_force_mean", "per_bond")})
    rec.update(delta_record(nnp, ref))
    rec.update(smd_bond_comparison(nnp["replica_records"], ref.get("replica_records") or [],
                                   _same_place(molecule_xyz)))
    rec["no_barrier_reason"] = no_barrier_reason(nnp)
    if cogef_json is not None and reference_cogef_json is not None:
        c_nnp, c_ref = read_json(cogef_json), read_json(reference_cogef_json)
        rec.update({f"nnp_cogef_{k}": c_nnp.get(k) for k in COGEF_KEYS})
        rec.update({f"ref_cogef_{k}": c_ref.get(k) for k in COGEF_KEYS})
        rec.update(cogef_comparison(c_nnp, c_ref, _same_place(molecule_xyz, c_ref["pull"])))
        if member_cogef_jsons:
            rec.update(committee_cogef([read_json(p) for p in member_cogef_jsons], c_ref))
    ens = load_model(ensemble_path)
    unseen = Frames.concatenate([read_frames(p) for p in unseen_paths])
    unseen = unseen.subset(unseen.ok)
    errs = evaluate_errors(ens, unseen)
    predicted = member_energies(ens, unseen).mean(axis=0)
    rec.update({"unseen_frames": len(unseen),
                "unseen_energy_mae": float(np.abs(predicted - unseen.energy).mean()),
                "unseen_force_mae": errs["force_mae"]})
    if reference_cogef_frames is not None:
        cf = read_frames(reference_cogef_frames)
        cf = cf.subset(cf.ok)
        rec["cogef_frames_energy_mae"] = float(np.abs(member_energies(ens, cf).mean(axis=0) - cf.energy).mean())
    if out_predictions is not None:
        write_json(out_predictions, {"unit": "eV", "reference_energy": unseen.energy,
                                     "predicted_energy": predicted,
                                     "spring_distance": unseen.extras.get("spring_distance")})
    best = read_json(best_json)
    rec["best_member"] = best["best_member"]
    members = []
    for p in member_infos:
        h = read_json(p)["history"]
        members.append({k: h.get(k) for k in ("train_energy_mae", "val_energy_mae", "train_force_mae",
                                               "val_force_mae", "best_epoch", "seconds")})
    rec["members"] = members
    for key in ("train_energy_mae", "val_energy_mae"):
        vals = [m[key] for m in members if m.get(key) is not None]
        rec[f"mean_{key}"] = float(np.mean(vals)) if vals else float("nan")
    rec["held_out"] = merge_json is None
    merge = read_json(merge_json) if merge_json is not None else _NOTHING_MERGED
    rec.update({"frames_selected": merge["selected"], "frames_augmented": merge["augmented"],
                "frames_labeller_steps": merge.get("labeller_steps", 0),
                "labels_failed": merge["failed_labels"], "labels_screened": merge.get("screened_labels", 0),
                "frames_added": merge["added"],
                "dataset_frames": merge["total_frames"], "label_seconds": merge["label_seconds"],
                "all_labels_failed": bool(merge.get("all_labels_failed", False)),
                "empty_selection": merge["labelled"] == 0})  # never for a held-out molecule (None)
    rec["wall_seconds"] = wall_seconds(benchmark_files)
    if molecule_xyz is not None:
        flags = bond_flags(molecule_xyz, replica_paths)
        rec["bond_report"] = flags
        rec["replicas_multi_fragment"] = sum(f.get("first_multi_fragment") is not None for f in flags)
        rec["replicas_wrong_bond_broken"] = sum(f.get("first_wrong_bond_broken") is not None for f in flags)
    write_json(out, rec)
    bonds = smd_bonds_text(rec)
    log.info("iteration %d: E_a (to the break) %.4f ± %.4f eV vs reference %.4f ± %.4f eV: |ΔE_a| = %.2f ± %.2f "
             "kcal/mol%s%s (%s); work after the break %.3f eV (reference %.3f); COGEF |ΔE_max| = %s kcal/mol%s; "
             "unseen energy MAE %.4f eV", iteration, nnp["ea_mean"], nnp["ea_stderr"], ref["ea_mean"],
             ref["ea_stderr"], rec["abs_delta_ea_kcal"], rec["delta_ea_stderr_kcal"],
             f" ({rec['no_barrier_reason']})" if rec["no_barrier_reason"] else "",
             f" ({bonds})" if bonds else "", _snap_note(rec), nnp["post_break_work_mean"],
             ref.get("post_break_work_mean", float("nan")), f"{rec.get('cogef_abs_delta_e_max_kcal', float('nan')):.2f}",
             _members_note(rec),
             errs["energy_mae"])
    return rec


def _snap_note(rec: dict) -> str:
    """ΔE_a split at the snap's start: the chain's stretch and the bond's snap."""
    to, after = rec.get("work_to_snap_delta_kcal"), rec.get("work_in_snap_delta_kcal")
    if not (isinstance(to, float) and math.isfinite(to) and math.isfinite(after)):
        return "not split at the snap"
    return f"{to:+.2f} stretching the chain, {after:+.2f} while the bond snaps"


SUMMARY_COLUMNS = [
    "iteration", "nnp_ea_mean", "nnp_ea_stderr", "nnp_n_replicas", "ref_ea_mean", "ref_ea_stderr",
    "ref_n_replicas", "ref_replicas_run", "delta_ea", "delta_ea_stderr", "abs_delta_ea_kcal", "delta_ea_stderr_kcal",
    "nnp_break_distance_mean", "ref_break_distance_mean", "smd_same_bond_fraction", "nnp_smd_bonds", "ref_smd_bonds", "unseen_energy_mae", "unseen_force_mae",
    "mean_train_energy_mae", "mean_val_energy_mae", "frames_selected", "frames_augmented",
    "frames_labeller_steps", "labels_failed", "labels_screened", "frames_added", "labels_total", "dataset_frames", "wall_seconds", "label_seconds",
    "empty_selection", "all_labels_failed", "replicas_multi_fragment", "replicas_wrong_bond_broken",
    "nnp_unbroken", "nnp_post_break_work_mean", "ref_post_break_work_mean", "nnp_post_break_force_mean",
    "ref_post_break_force_mean", "post_break_work_delta_kcal", "work_to_snap_delta_kcal",
    "work_in_snap_delta_kcal", "no_barrier_reason",
    "nnp_cogef_e_max", "ref_cogef_e_max", "cogef_delta_e_max_kcal", "cogef_abs_delta_e_max_kcal",
    "nnp_cogef_f_max", "ref_cogef_f_max", "cogef_delta_f_max", "cogef_rmse_to_break_kcal", "cogef_intact_delta_kcal",
    "cogef_intact_extension", "cogef_break_shift", "cogef_d0_delta", "cogef_break_shift_distance",
    "cogef_intact_delta_at_distance_kcal", "cogef_delta_e_at_f_max_kcal", "cogef_e_max_past_f_max_kcal",
    "ref_cogef_e_max_past_f_max_kcal", "cogef_same_bond",
    "nnp_cogef_broke", "nnp_cogef_broken_label", "ref_cogef_broken_label", "cogef_post_break_rise",
    "ref_cogef_post_break_rise", "cogef_frames_energy_mae", "cogef_members_n", "cogef_members_broke",
    "cogef_members_worst_abs_delta_kcal", "cogef_members_e_max_spread_kcal",
]


def summary_step(evaluation_paths: Sequence, out, reference_md_frames: int | None = None) -> "object":
    """One row per iteration (``results/summary.csv``)."""
    import pandas as pd

    rows = []
    labels_total = reference_md_frames or 0
    for p in evaluation_paths:
        ev = read_json(p)
        labels_total += ev["frames_selected"] + ev["frames_augmented"] + ev.get("frames_labeller_steps", 0)
        row = {c: ev.get(c) for c in SUMMARY_COLUMNS if c != "labels_total"}
        row["labels_total"] = labels_total
        for k, m in enumerate(ev.get("members", [])):
            row[f"member{k}_train_energy_mae"] = m.get("train_energy_mae")
            row[f"member{k}_val_energy_mae"] = m.get("val_energy_mae")
        rows.append(row)
    df = pd.DataFrame(rows)
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    return df


def family_summary_step(summary_paths: Sequence, names: Sequence[str], out) -> "object":
    """The family's table (``results/summary.csv``): every molecule's summary rows, the
    molecule's name first, then ``campaign_labels_total``: the labels of the whole campaign
    (every molecule's MD set and selections) up to that iteration."""
    import pandas as pd

    if len(summary_paths) != len(names):
        raise ValueError(f"{len(summary_paths)} summaries but {len(names)} molecule names")
    parts = []
    for path, name in zip(summary_paths, names):
        df = pd.read_csv(path)
        df.insert(0, "molecule", name)
        parts.append(df)
    table = pd.concat(parts, ignore_index=True)
    table["campaign_labels_total"] = table["iteration"].map(table.groupby("iteration")["labels_total"].sum())
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    return table
