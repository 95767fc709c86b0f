"""Baselines and studies around a campaign (paper Fig. 2c/2d, Fig. 7b, SI Fig. S7).

Each study compares activation energies E_a = max W up to the break of SMD runs driven by a potential
with those driven by the labeller, replica by replica with the same seeds, and reports
ΔE_a = mean(potential) − mean(labeller) with its standard error:

``baselines``
    Two ensembles that never saw active learning: iteration 0's (trained on the
    equilibrium MD set alone) and one trained on the labelled reference SMD frames
    (:func:`smd_frames_dataset`), each pulled like the reference (Fig. 2c, 2d).
``transfer``
    The final iteration's potential on other n-alkanes CnH2n+2 (Fig. 7b).
``strain_rates``
    The campaign's molecule pulled at other speeds, the pulled distance kept
    (:func:`scaled_protocol`; SI Fig. S7).

The SMD runs themselves are :func:`rarelearn.steps.sample.smd_replica`; the statistics are
those of the campaign's evaluation (:mod:`rarelearn.learning.evaluation`). Units: eV, Å, fs,
Å/ps; kcal/mol only in the ``*_kcal`` columns and the figures.
"""
from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np

from ..campaign_molecules import alkane_pull_steps
from ..dataset import Frames, merge_frames, read_frames, write_frames
from ..atomic import atomic_path
from ..chem.barrier import delta_record
from ..chem.barrier import barrier_of_files
from ..jsonio import write_json

__all__ = [
    "STUDY_COLUMNS",
    "COGEF_COLUMNS",
    "compare_cogef",
    "scaled_protocol",
    "transfer_protocol",
    "speed_label",
    "smd_frames_dataset",
    "compare_barriers",
    "study_table",
    "baselines_step",
    "transfer_step",
    "strain_rates_step",
]

log = logging.getLogger("rarelearn")

#: Columns of every study table (one row per case), after the case's own key columns.
STUDY_COLUMNS = [
    "labeller_ea_mean", "labeller_ea_stderr", "labeller_n_replicas",
    "potential_ea_mean", "potential_ea_stderr", "potential_n_replicas", "potential_failed_replicas",
    "labeller_unbroken", "potential_unbroken",
    "delta_ea", "delta_ea_stderr", "delta_ea_kcal", "delta_ea_stderr_kcal", "abs_delta_ea_kcal",
    "delta_stderr_defined", "labeller_break_distance_mean", "potential_break_distance_mean",
]

#: Columns added when the study compares COGEF profiles too (one labeller and one potential
#: profile per case; :func:`rarelearn.learning.evaluation.cogef_comparison`).
COGEF_COLUMNS = [
    "labeller_cogef_e_max", "potential_cogef_e_max", "cogef_delta_e_max_kcal", "cogef_abs_delta_e_max_kcal",
    "cogef_delta_f_max", "cogef_same_bond", "labeller_cogef_broken_label", "potential_cogef_broken_label",
]


def compare_cogef(labeller_json, potential_json) -> dict:
    """The :data:`COGEF_COLUMNS` of one case from the two profiles' JSON files."""
    import json
    from pathlib import Path

    from ..learning.evaluation import cogef_comparison

    lab = json.loads(Path(labeller_json).read_text())
    pot = json.loads(Path(potential_json).read_text())
    c = cogef_comparison(pot, lab)
    return {"labeller_cogef_e_max": lab["e_max"], "potential_cogef_e_max": pot["e_max"],
            **{k: c[k] for k in ("cogef_delta_e_max_kcal", "cogef_abs_delta_e_max_kcal", "cogef_delta_f_max",
                                 "cogef_same_bond")},
            "labeller_cogef_broken_label": lab.get("broken_label"),
            "potential_cogef_broken_label": pot.get("broken_label")}


def speed_label(velocity: float) -> str:
    """The text of a pulling speed (Å/ps) in file names: ``0.25``, ``0.5``, ``2``, ``4``."""
    return f"{float(velocity):g}"


def scaled_protocol(smd_cfg: dict, velocity: float) -> dict:
    """The ``smd`` protocol at another pulling speed, pulling the spring as far.

    Parameters
    ----------
    smd_cfg : the campaign's ``smd`` section (velocity in Å/ps, timestep in fs)
    velocity : the new speed, Å/ps (> 0)

    Returns
    -------
    A copy with ``velocity`` set and ``pull_steps`` = round(pull_steps · v₀ / v) (at least 1),
    so the rest length grows by v · pull_steps · timestep ≈ the protocol's (to within half a
    step). Relaxation, time step, temperature, spring and recording are unchanged.
    """
    velocity = float(velocity)
    if not velocity > 0 or not math.isfinite(velocity):
        raise ValueError(f"pulling speed must be a positive number of Å/ps, got {velocity!r}")
    out = dict(smd_cfg)
    out["velocity"] = velocity
    out["pull_steps"] = max(1, int(round(smd_cfg["pull_steps"] * float(smd_cfg["velocity"]) / velocity)))
    return out


def transfer_protocol(smd_cfg: dict, n_carbons: int, extension_per_bond: float) -> dict:
    """The ``smd`` protocol for the n-alkane with ``n_carbons``, pulled long enough to break
    (:func:`rarelearn.campaign_molecules.alkane_pull_steps`; a family pulls its alkanes the
    same way). Everything else is the protocol's."""
    return {**smd_cfg, "pull_steps": alkane_pull_steps(smd_cfg, n_carbons, extension_per_bond)}


def smd_frames_dataset(replica_paths: Sequence, out, stride: int = 1) -> Frames:
    """Training set of the SMD-frames baseline: the labelled frames of reference SMD replicas.

    Every ``stride``-th frame of each replica is kept, frames without a usable label are left
    out and duplicates (same content hash) kept once. Provenance stays that of the reference
    (source ``smd``, iteration −1).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    parts = []
    for p in replica_paths:
        fr = read_frames(p)
        parts.append(fr.subset(np.arange(0, len(fr), int(stride))))
    frames, counts = merge_frames(parts, only_ok=True)
    if len(frames) == 0:
        raise ValueError(f"no labelled frames in {[str(p) for p in replica_paths]}")
    frames.attrs = {"replicas": [str(p) for p in replica_paths], "stride": int(stride)}
    write_frames(out, frames)
    log.info("SMD-frames baseline data set: %d frames from %d replicas (stride %d; %d duplicates, %d unusable)",
             len(frames), len(parts), stride, counts["duplicates"], counts["not_ok"])
    return frames


def compare_barriers(labeller_paths: Sequence, potential_paths: Sequence) -> dict:
    """E_a of the labeller's and the potential's SMD replicas and their difference.

    A potential replica that stopped before the pull began (no frames) has no E_a: it is left
    out and counted in ``potential_failed_replicas``; a labeller replica without frames is an
    error. E_a is read up to the break (:func:`rarelearn.chem.barrier.read_replica`); ``*_unbroken``
    count the replicas in which no bond broke, which have no barrier (pull further). The standard error follows :func:`rarelearn.chem.barrier.delta_record`: a side with one
    replica counts as 0 and ``delta_stderr_defined`` is False (the figures then draw no error
    bar). Returns the :data:`STUDY_COLUMNS` plus the full records (``labeller``, ``potential``).
    """
    lab = barrier_of_files(labeller_paths)
    pot = barrier_of_files(potential_paths, allow_empty=True)
    d = delta_record(pot, lab)
    row = {
        "labeller_ea_mean": lab["ea_mean"], "labeller_ea_stderr": lab["ea_stderr"],
        "labeller_n_replicas": lab["n_replicas"],
        "potential_ea_mean": pot["ea_mean"], "potential_ea_stderr": pot["ea_stderr"],
        "potential_n_replicas": pot["n_replicas"], "potential_failed_replicas": len(pot["failed_replicas"]),
        "labeller_unbroken": lab["unbroken"], "potential_unbroken": pot["unbroken"],
        "delta_ea": d["delta_ea"], "delta_ea_stderr": d["delta_ea_stderr"], "delta_ea_kcal": d["delta_ea_kcal"],
        "delta_ea_stderr_kcal": d["delta_ea_stderr_kcal"], "abs_delta_ea_kcal": d["abs_delta_ea_kcal"],
        "delta_stderr_defined": d["delta_stderr_defined"],
        "labeller_break_distance_mean": lab["break_distance_mean"],
        "potential_break_distance_mean": pot["break_distance_mean"],
    }
    return {**row, "labeller": lab, "potential": pot}


def _chunks(paths: Sequence, n_cases: int) -> list[list[str]]:
    paths = [str(p) for p in paths]
    if n_cases < 1 or len(paths) % n_cases:
        raise ValueError(f"{len(paths)} replica files do not split into {n_cases} cases of equal size")
    k = len(paths) // n_cases
    return [paths[i * k:(i + 1) * k] for i in range(n_cases)]


def study_table(key: str, cases: Sequence, labeller_paths: Sequence, potential_paths: Sequence,
                extra: dict | None = None, cogef: Sequence | None = None) -> tuple["object", list[dict]]:
    """One row per case of a study.

    Parameters
    ----------
    key : name of the case column (``alkane``, ``velocity``, ``baseline``)
    cases : the case values, in order
    labeller_paths, potential_paths : SMD replica files, case by case (every case the same
        number of replicas on a side, the cases in the order of ``cases``)
    extra : optional per-column lists of values to add (one per case)
    cogef : optional (labeller profile JSON, potential profile JSON) per case: adds the
        :data:`COGEF_COLUMNS`

    Returns
    -------
    (pandas.DataFrame with ``key``, the ``extra`` columns and :data:`STUDY_COLUMNS`;
     the full records, one dict per case, for the JSON file)
    """
    import pandas as pd

    labs = _chunks(labeller_paths, len(cases))
    pots = _chunks(potential_paths, len(cases))
    rows, records = [], []
    for j, (case, lab, pot) in enumerate(zip(cases, labs, pots)):
        rec = compare_barriers(lab, pot)
        if cogef is not None:
            rec.update(compare_cogef(*cogef[j]))
        head = {key: case, **{c: v[j] for c, v in (extra or {}).items()}}
        rows.append({**head, **{c: rec[c] for c in STUDY_COLUMNS + (COGEF_COLUMNS if cogef is not None else [])}})
        records.append({**head, **rec})
    return pd.DataFrame(rows), records


def _write(df, records: list[dict], out_json, out_csv, meta: dict) -> None:
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    write_json(out_json, {**meta, "unit": "eV (kcal/mol in *_kcal)", "cases": records})


def baselines_step(reference_paths: Sequence, baseline_paths: dict, out_json, out_csv, out_png,
                   training_sets: dict | None = None) -> "object":
    """Fig. 2c/2d: each baseline ensemble's SMD against the reference SMD (same seeds).

    ``baseline_paths`` maps a baseline's name (``equilibrium``, ``smd_frames``) to its SMD
    replica files; ``training_sets`` optionally its training set file (its size is reported).
    Writes the table (CSV), the full records (JSON) and the work-curve figure (PNG)."""
    from .report import plot_baselines

    names = list(baseline_paths)
    pots = [p for n in names for p in baseline_paths[n]]
    sizes = [len(baseline_paths[n]) for n in names]
    if len(set(sizes)) != 1:
        raise ValueError(f"baselines have different numbers of replicas: {dict(zip(names, sizes))}")
    refs = [str(p) for p in reference_paths] * len(names)
    sets = training_sets or {}
    extra = {"training_frames": [len(read_frames(sets[n])) if n in sets else None for n in names]}
    df, records = study_table("baseline", names, refs, pots, extra=extra)
    _write(df, records, out_json, out_csv, {"study": "baselines"})
    plot_baselines(reference_paths, baseline_paths, df, out_png)
    for _, r in df.iterrows():
        log.info("baseline %s: E_a %.3f ± %.3f eV vs reference %.3f ± %.3f eV: ΔE_a = %.1f ± %.1f kcal/mol",
                 r.baseline, r.potential_ea_mean, r.potential_ea_stderr, r.labeller_ea_mean,
                 r.labeller_ea_stderr, r.delta_ea_kcal, r.delta_ea_stderr_kcal)
    return df


def transfer_step(alkanes: Sequence[int], labeller_paths: Sequence, potential_paths: Sequence, iteration: int,
                  out_json, out_csv, out_png, trained_on: int | None = None,
                  labeller_cogef: Sequence | None = None, potential_cogef: Sequence | None = None) -> "object":
    """Fig. 7b: ΔE_a of the potential of ``iteration`` on each n-alkane (``alkanes``: numbers of
    carbons; replica files alkane by alkane). ``trained_on``: the campaign's alkane, marked.
    The table records each alkane's pull (``pull_steps``, as the labeller's first replica ran).
    With ``labeller_cogef``/``potential_cogef`` (one profile JSON per alkane) it compares the
    COGEF profiles too."""
    from .report import plot_study

    alkanes = [int(n) for n in alkanes]
    steps = [int(read_frames(lab[0]).attrs["protocol"]["pull_steps"]) if lab else None
             for lab in _chunks(labeller_paths, len(alkanes))]
    cogef = list(zip(labeller_cogef, potential_cogef)) if labeller_cogef and potential_cogef else None
    df, records = study_table("alkane", alkanes, labeller_paths, potential_paths, extra={"pull_steps": steps},
                              cogef=cogef)
    _write(df, records, out_json, out_csv, {"study": "transfer", "iteration": int(iteration),
                                            "trained_on": trained_on})
    plot_study(df, "alkane", out_png, xlabel="carbons n of CnH2n+2",
               title=f"Transfer of iteration {int(iteration)}'s potential" +
                     (f" (trained on C{trained_on})" if trained_on else ""), mark=trained_on)
    for _, r in df.iterrows():
        log.info("C%d: ΔE_a = %.1f ± %.1f kcal/mol%s", r.alkane, r.delta_ea_kcal, r.delta_ea_stderr_kcal,
                 f"; COGEF ΔE_max = {r.cogef_delta_e_max_kcal:.1f} kcal/mol" if cogef else "")
    return df


def strain_rates_step(velocities: Sequence[float], labeller_paths: Sequence, potential_paths: Sequence,
                      smd_cfg: dict, iteration: int, out_json, out_csv, out_png,
                      cogef: tuple | None = None) -> "object":
    """SI Fig. S7: ΔE_a of the potential of ``iteration`` per pulling speed (Å/ps; replica files
    speed by speed), each speed pulling as far as the ``smd`` protocol (:func:`scaled_protocol`).
    ``cogef`` = (reference profile JSON, the iteration's profile JSON): the COGEF comparison,
    the quasi-static limit that every speed's ΔE_a should approach as the pull slows, is added
    to every row."""
    from .report import plot_study

    velocities = [float(v) for v in velocities]
    protocols = [scaled_protocol(smd_cfg, v) for v in velocities]
    extra = {"pull_steps": [p["pull_steps"] for p in protocols],
             "pulled_distance": [p["velocity"] * p["pull_steps"] * p["timestep_fs"] * 1e-3 for p in protocols]}
    df, records = study_table("velocity", velocities, labeller_paths, potential_paths, extra=extra,
                              cogef=[cogef] * len(velocities) if cogef else None)
    _write(df, records, out_json, out_csv, {"study": "strain_rates", "iteration": int(iteration),
                                            "protocol_velocity": float(smd_cfg["velocity"])})
    plot_study(df, "velocity", out_png, xlabel="pulling speed (Å/ps)", logx=True,
               title=f"Strain rates: iteration {int(iteration)}'s potential vs labeller",
               mark=float(smd_cfg["velocity"]))
    for _, r in df.iterrows():
        log.info("v = %g Å/ps (%d steps): ΔE_a = %.1f ± %.1f kcal/mol", r.velocity, r.pull_steps, r.delta_ea_kcal,
                 r.delta_ea_stderr_kcal)
    return df


