"""smd against smd+hal (and hal) at the same label budget, on hexane (issue 9).

Runs one campaign per sampler through Snakemake (reduced config,
``benchmarks/configs/hal_hexane.yaml``), then prints per iteration |ΔE_a| (kcal/mol,
± standard error over the SMD replicas) against the labels spent so far, and the HAL
paper's MD-stability measure of each campaign's final potential: steps of a 500 K
Langevin MD with the last iteration's best member before the molecule breaks, over
several seeds, capped. "Breaks" is the paper's rule (van der Oord et al., PEG): a bond of
the starting structure leaves 1.0–2.0 Å (C–C) or 0.8–2.0 Å (C–H) in a recorded frame;
or earlier, a blow-up of :mod:`rarelearn.md.dynamics` stops the run.

Every sampler's ΔE_a is the potential's own: the workflow evaluates the best member's
unbiased SMD replicas (same seeds as the reference's) whatever sampled the frames.

The first sampler's campaign runs from scratch in WORKDIR/<sampler>; each other one
starts from a copy of it (reference stage and iteration 0's training are the same jobs,
Snakemake reruns only what the sampler changes).

    nice -n 10 python benchmarks/hal_vs_smd.py --workdir /tmp/halbench
    python benchmarks/hal_vs_smd.py --workdir /tmp/halbench --no-run      # only report

Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "benchmarks" / "configs" / "hal_hexane.yaml"
SAMPLERS = ("smd", "smd+hal", "hal")


def workdir_of(base: Path, sampler: str) -> Path:
    return base / sampler.replace("+", "_")


def run_campaign(base: Path, sampler: str, config: Path, first: str | None, cores: int) -> float:
    """Snakemake campaign with ``sampler.kind = sampler``; returns its wall time (s)."""
    wd = workdir_of(base, sampler)
    if first is not None and not wd.exists():
        shutil.copytree(workdir_of(base, first), wd, symlinks=True)
    wd.mkdir(parents=True, exist_ok=True)
    overlay = wd / "sampler.yaml"
    overlay.write_text(yaml.safe_dump({"sampler": {"kind": sampler}}))
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-s", str(REPO / "Snakefile"), "--cores", str(cores),
           "--nocolor", "--configfile", str(config.resolve()), str(overlay)]
    t0 = time.time()
    with open(wd / "campaign.log", "w") as log:
        rc = subprocess.call(cmd, cwd=wd, stdout=log, stderr=subprocess.STDOUT,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
    if rc:
        raise SystemExit(f"snakemake failed for sampler {sampler} (exit {rc}); see {wd / 'campaign.log'}")
    return time.time() - t0


def steps_to_break(wd: Path, seeds: int, max_steps: int, temperature_K: float, record_every: int = 10) -> list[int]:
    """Steps before a 500 K MD with the final potential (last iteration's best member)
    breaks the molecule: first recorded frame with a starting bond outside its window
    (C–C 1.0–2.0 Å, X–H 0.8–2.0 Å), or the blow-up step; ``max_steps`` when neither happens."""
    import torch

    from rarelearn.md.dynamics import run_md
    from rarelearn.chem.geometry import bond_matrix
    from rarelearn.chem.molecules import load_prepared_molecule
    from rarelearn.jsonio import read_json
    from rarelearn.models.files import load_model, make_calculator

    torch.set_num_threads(1)
    logging.getLogger("rarelearn").setLevel(logging.ERROR)  # the break is reported below, not as a warning
    last = sorted((wd / "results").glob("iter_*/evaluation.json"))[-1].parent
    best = int(read_json(last / "best.json")["best_member"])
    atoms, _, _ = load_prepared_molecule(wd / "results" / "reference" / "molecule.xyz")
    calc = make_calculator(load_model(last / "ensemble.pt"), member=best)
    i, j = np.nonzero(np.triu(bond_matrix(atoms.numbers, atoms.positions)))
    has_h = (atoms.numbers[i] == 1) | (atoms.numbers[j] == 1)
    lo = np.where(has_h, 0.8, 1.0)
    out = []
    for seed in range(seeds):
        fr = run_md(atoms, calc, temperature_K=temperature_K, n_frames=max_steps // record_every, timestep_fs=0.5,
                    seed=seed, record_every=record_every, thermostat="langevin")
        d = np.linalg.norm(fr.positions[:, i] - fr.positions[:, j], axis=2)  # (F, bonds)
        broken = np.flatnonzero(((d < lo) | (d > 2.0)).any(axis=1))
        if broken.size:
            out.append(int(fr.extras["step"][broken[0]]))
        elif fr.attrs["stop_reason"] != "completed":
            out.append(int(fr.attrs["steps_done"]))
        else:
            out.append(max_steps)
    return out


def hal_stats(wd: Path) -> str:
    """How the HAL runs of a campaign ended (hal sampler only)."""
    fired = runs = 0
    steps = []
    for sel in sorted((wd / "results").glob("iter_*/selected/selection.json")):
        rec = json.loads(sel.read_text())
        for r in rec.get("runs", []):
            runs += 1
            fired += bool(r["fired"])
            steps.append(r["steps_done"])
    if not runs:
        return ""
    return f"HAL runs: {fired} of {runs} fired the stop criterion; median {np.median(steps):.0f} steps per run"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--no-run", action="store_true", help="only report on finished campaigns")
    p.add_argument("--md-seeds", type=int, default=4, help="stability MD runs per potential")
    p.add_argument("--md-steps", type=int, default=4000, help="cap of the stability MD (steps of 0.5 fs)")
    p.add_argument("--md-temperature", type=float, default=500.0)
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    walls = {}
    if not args.no_run:
        first = None
        for s in args.samplers:
            walls[s] = run_campaign(args.workdir, s, args.config, first, args.cores)
            print(f"{s}: campaign {walls[s]:.0f} s wall", flush=True)
            first = first or s
    tables = {s: pd.read_csv(workdir_of(args.workdir, s) / "results" / "summary.csv") for s in args.samplers}
    for t in tables.values():  # labels the evaluated potential of each iteration was trained on
        t["labels_trained"] = t.labels_total - t.frames_selected - t.frames_augmented
    md0 = int(tables[args.samplers[0]].labels_trained.iloc[0])
    print(f"\n|ΔE_a| (kcal/mol, ± SE over SMD replicas) @ labels the potential was trained on "
          f"({md0} of them the MD set)")
    print(f"{'iter':>4} " + " ".join(f"{s:>22}" for s in args.samplers))
    n = max(len(t) for t in tables.values())
    for i in range(n):
        cells = []
        for s in args.samplers:
            t = tables[s]
            if i < len(t):
                r = t.iloc[i]
                cells.append(f"{r.abs_delta_ea_kcal:7.2f} ± {r.delta_ea_stderr_kcal:4.2f} @{int(r.labels_trained):5d}")
            else:
                cells.append(" " * 22)
        print(f"{i:>4} " + " ".join(f"{c:>22}" for c in cells))
    print("\nper campaign: final |ΔE_a| and the AL labels its potential was trained on, change per 100 of them, "
          "unseen-frame energy MAE, "
          f"MD stability ({args.md_seeds} seeds, {args.md_temperature:.0f} K, cap {args.md_steps} steps)")
    for s in args.samplers:
        t = tables[s]
        al = int(t.labels_trained.iloc[-1]) - md0
        slope = ((t.abs_delta_ea_kcal.iloc[-1] - t.abs_delta_ea_kcal.iloc[0]) / al * 100) if al else float("nan")
        t0 = time.time()
        steps = steps_to_break(workdir_of(args.workdir, s), args.md_seeds, args.md_steps, args.md_temperature)
        print(f"{s:>8}: |ΔE_a| {t.abs_delta_ea_kcal.iloc[-1]:.2f} ± {t.delta_ea_stderr_kcal.iloc[-1]:.2f} kcal/mol "
              f"after {al} AL labels ({slope:+.2f} kcal/mol per 100 labels from iteration 0); "
              f"unseen MAE {1000 * t.unseen_energy_mae.iloc[-1]:.0f} meV; "
              f"steps to break: min {min(steps)}, per seed {steps} ({time.time() - t0:.0f} s)"
              + (f"; campaign {walls[s]:.0f} s" if s in walls else ""))
        extra = hal_stats(workdir_of(args.workdir, s))
        if extra:
            print(f"{'':>10}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
