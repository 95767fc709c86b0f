"""Cross-sampling study (SI Note 2 of the paper): train each model family on the frames the
OTHER family's SMD sampled, run the SMD replicas with the result, and compare.

Given two finished campaigns on the same reference stage, one ``model.family: ani`` and one
``schnet`` (``campaign.max_iterations`` >= 2), and an acquisition round ``i`` (``--sampled-at``):

* frames *acquired by family B at round i* = B's ``results/iter_{i}/merged.h5`` minus the set
  B trained on at iteration i (by content hash; checked against the frames' provenance), i.e.
  the selected + noisy copies its iteration-i SMD sampled and the labeller labelled;
* the *cross* data set of family A = the set A trained on at iteration i
  (``iter_000/dataset.h5`` for i = 0, else ``iter_{i-1}/merged.h5``) + B's acquisition;
* family A is trained on it exactly as A's own iteration i+1 was (its config: members, seeds,
  recipe, warm start from and split inherited from A's iteration i), its best member pulls the
  molecule in the reference's SMD replicas (same seeds), and it is evaluated like a campaign
  iteration (``rarelearn.steps.evaluate.evaluate_step``: ΔE_a ± standard error, MAE on the unseen reference
  SMD frames, C–C bond/fragment flags).

``--sampled-at 0`` is the paper's experiment (Fig. S9: "trained from the configurations sampled
by the other model at the first AL iteration"): the *own* cells are then the campaigns'
iteration 1 and are read, not retrained. For i >= 1 the own cell (A on its own iteration-i
acquisition, i.e. A's iteration i+1) is trained here too, unless the campaign has it.

Prints, per campaign iteration and per cell: |ΔE_a| (kcal/mol) ± SE, replicas with more than two
fragments / another C–C bond broken (and how many frames), the second-longest C–C bond at the last
intact frame (Fig. 4b iii: two long C–C bonds) and the largest terminal CH3 rotation before the
break (SI Note 2), with the reference SMD for comparison; energy/force MAE on unseen frames.

    python benchmarks/cross_sampling.py --ani /tmp/xs_ani --schnet /tmp/xs_schnet --out /tmp/xs_cross
    python benchmarks/cross_sampling.py ... --sampled-at 1           # B's iteration-1 acquisition
    python benchmarks/cross_sampling.py ... --report-only             # only print what is there

Configs default to config/config.yaml + benchmarks/configs/{ani,schnet}_study.yaml (what the
campaigns were run with); pass --ani-config / --schnet-config FILE... otherwise.
Run on demand; not a test. Every step skips outputs that exist, so a killed run resumes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("ani", "schnet")


# ---------------------------------------------------------------------- config
def load_config(files) -> dict:
    """The config of several files merged as Snakemake merges several --configfile."""
    from snakemake.utils import update_config

    from rarelearn.config import load_yaml, validate_config

    cfg: dict = {}
    for f in files:
        update_config(cfg, load_yaml(f))
    return validate_config(cfg, check_labeller=False)


def _model_format(path: Path) -> str:
    import torch

    return str(torch.load(path, map_location="cpu", weights_only=True).get("format"))


def check_campaign(workdir: Path, cfg: dict, family: str, need_iterations: int) -> None:
    fam = cfg["model"]["family"]
    if fam != family:
        sys.exit(f"the config given for {workdir} has model.family {fam!r}, expected {family!r}")
    for i in range(need_iterations):
        if not (workdir / f"results/iter_{i:03d}/evaluation.json").exists():
            sys.exit(f"{workdir}: iteration {i} is not finished (no evaluation.json); run the campaign with "
                     f"campaign.max_iterations >= {need_iterations}")
    fmt = _model_format(workdir / "results/iter_000/ensemble.pt")
    if fmt != f"rarelearn-{family}":
        sys.exit(f"{workdir}: models are {fmt!r}, not a {family} campaign")


def check_same_reference(a: Path, b: Path, cfg_a: dict, cfg_b: dict) -> None:
    """Both campaigns must share molecule, labeller, reference set, SMD protocol and barrier."""
    from rarelearn.dataset import read_frames

    for key in ("molecule", "labeller", "reference", "smd", "evaluation"):
        if cfg_a[key] != cfg_b[key]:
            sys.exit(f"the campaigns differ in {key}: {cfg_a[key]} vs {cfg_b[key]}; they need the same reference")
    ha = read_frames(a / "results/iter_000/dataset.h5").hashes
    hb = read_frames(b / "results/iter_000/dataset.h5").hashes
    if len(ha) != len(hb) or (ha != hb).any():
        sys.exit(f"{a} and {b} have different iteration-0 data sets")
    ea = json.loads((a / "results/reference/barrier.json").read_text())["ea_values"]
    eb = json.loads((b / "results/reference/barrier.json").read_text())["ea_values"]
    if not np.allclose(ea, eb):
        sys.exit(f"{a} and {b} have different reference barriers ({ea} vs {eb})")


# ---------------------------------------------------------------------- data
def training_set_path(workdir: Path, iteration: int) -> Path:
    """The data set a campaign trained on at ``iteration`` (as common.smk's training_data)."""
    if iteration == 0:
        return workdir / "results/iter_000/dataset.h5"
    return workdir / f"results/iter_{iteration - 1:03d}/merged.h5"


def acquisition(workdir: Path, iteration: int):
    """Frames a campaign added at ``iteration`` (selected + noisy copies, labelled, ok)."""
    from rarelearn.dataset import read_frames

    base = read_frames(training_set_path(workdir, iteration))
    merged = read_frames(workdir / f"results/iter_{iteration:03d}/merged.h5")
    old = set(base.hashes)
    new = np.array([h not in old for h in merged.hashes])
    sub = merged.subset(np.flatnonzero(new))
    wrong = sub.iteration != iteration
    if wrong.any():
        sys.exit(f"{workdir}: {int(wrong.sum())} new frames of iteration {iteration} carry iteration "
                 f"{sorted(set(sub.iteration[wrong].tolist()))}")
    return sub


def own_in_campaign(workdir: Path, sampled_at: int) -> bool:
    """The own cell (a family on its own iteration-i acquisition) is the campaign's iteration i+1."""
    return (workdir / f"results/iter_{sampled_at + 1:03d}/evaluation.json").exists()


# ---------------------------------------------------------------------- jobs (run in worker processes)
def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _job_train(args) -> str:
    from rarelearn.steps.common import setup_logging
    from rarelearn.steps.train import train_member_step

    (data, atom_energies, model_cfg, training_cfg, elements, iteration, member, out_model, out_info,
     previous_dir, base, log_path) = args
    if Path(out_model).exists() and Path(out_info).exists():
        return f"{out_model} (kept)"
    setup_logging(log_path, threads=1)
    t0 = time.time()
    train_member_step(data, atom_energies, model_cfg, training_cfg, elements, iteration, member,
                               out_model, out_info, previous_dir=previous_dir, base_data_path=base)
    return f"{out_model} ({time.time() - t0:.0f} s)"


def _job_smd(args) -> str:
    from rarelearn.steps.common import setup_logging
    from rarelearn.steps.sample import smd_replica

    molecule, smd_cfg, seed, out, ensemble, best, sampler, log_path = args
    if Path(out).exists():
        return f"{out} (kept)"
    setup_logging(log_path, threads=1)
    t0 = time.time()
    smd_replica(molecule, smd_cfg, seed, out, ensemble_path=ensemble, best_json=best, sampler=sampler)
    return f"{out} ({time.time() - t0:.0f} s)"


def _job_evaluate(args) -> str:
    from rarelearn.steps.common import setup_logging
    from rarelearn.steps.evaluate import evaluate_step

    (iteration, replicas, reference, unseen, ensemble, best, infos, merge_json, out, molecule, log_path) = args
    if Path(out).exists():
        return f"{out} (kept)"
    setup_logging(log_path, threads=1)
    evaluate_step(iteration, replicas, reference, unseen, ensemble, best, infos, None, merge_json, out,
                           molecule_xyz=molecule)
    return str(out)


def _run(pool, fn, jobs) -> None:
    for msg in pool.map(fn, jobs):
        print(f"  {msg}", flush=True)


# ---------------------------------------------------------------------- one cell
def cell_dir(out: Path, trained: str, sampler: str, sampled_at: int) -> Path:
    return out / f"{trained}_on_{sampler}_iter{sampled_at:03d}"


def build_cell(pool, out: Path, trained: str, sampler: str, sampled_at: int, work: dict, cfgs: dict) -> Path:
    """Train family ``trained`` on its iteration-``sampled_at`` training set + the frames family
    ``sampler`` acquired at ``sampled_at``; SMD replicas; evaluation. Returns the cell's folder."""
    from rarelearn.jsonio import write_json
    from rarelearn.steps.train import best_model_step
    from rarelearn.dataset import merge_frames, read_frames, write_frames

    wa, cfg = work[trained], cfgs[trained]
    d = cell_dir(out, trained, sampler, sampled_at)
    (d / "models").mkdir(parents=True, exist_ok=True)
    (d / "logs").mkdir(exist_ok=True)
    it = sampled_at + 1  # the iteration this training stands in for
    data = d / "dataset.h5"
    if not data.exists():
        base = read_frames(training_set_path(wa, sampled_at))
        new = acquisition(work[sampler], sampled_at)
        merged, counts = merge_frames([base, new], only_ok=True)
        merged.attrs = {"iteration": it, "cross_sampling": f"{trained} trained on {sampler}'s iteration "
                        f"{sampled_at} acquisition"}
        write_frames(data, merged)
        write_json(d / "merge.json", {
            "iteration": it, "previous_frames": len(base), "labelled": len(new), "failed_labels": 0,
            "added": len(merged) - len(base), "total_frames": len(merged), "duplicates": counts["duplicates"],
            "label_seconds": 0.0, "selected": int(np.isin(new.source, ("al", "hal")).sum()),
            "augmented": int((new.source == "augment").sum()),
            "base": str(training_set_path(wa, sampled_at)), "acquired_from": str(work[sampler])})
    print(f"[{d.name}] {json.loads((d / 'merge.json').read_text())['total_frames']} frames: "
          f"{trained}'s iteration-{sampled_at} training set + {sampler}'s iteration-{sampled_at} acquisition",
          flush=True)
    members = range(cfg["model"]["members"])
    ref = wa / "results/reference"
    prev = wa / f"results/iter_{sampled_at:03d}"
    needs_prev = cfg["training"]["split"] == "inherited" or cfg["training"]["warm_start"]
    _run(pool, _job_train, [
        (str(data), str(ref / "atom_energies.json"), cfg["model"], cfg["training"], cfg["molecule"]["elements"],
         it, k, str(d / f"models/member_{k}.pt"), str(d / f"models/member_{k}.json"),
         str(prev) if needs_prev else None, str(wa / "results/iter_000/dataset.h5"), str(d / f"logs/train_{k}.log"))
        for k in members])
    if not (d / "best.json").exists():
        best_model_step(data, [d / f"models/member_{k}.pt" for k in members], d / "ensemble.pt",
                                 d / "best.json")
    n_rep = cfg["reference"]["replicas"]
    reps = [d / f"smd/replica_{r:02d}.h5" for r in range(n_rep)]
    _run(pool, _job_smd, [
        (str(ref / "molecule.xyz"), cfg["smd"], cfg["reference"]["smd_seed"] + r, str(reps[r]),
         str(d / "ensemble.pt"), str(d / "best.json"), cfg["sampler"], str(d / f"logs/smd_{r:02d}.log"))
        for r in range(n_rep)])
    unseen = [str(ref / f"smd/replica_{r:02d}.h5") for r in range(cfg["evaluation"]["mae_replicas"])]
    _run(pool, _job_evaluate, [
        (it, [str(p) for p in reps], str(ref / "barrier.json"), unseen, str(d / "ensemble.pt"), str(d / "best.json"),
         [str(d / f"models/member_{k}.json") for k in members], str(d / "merge.json"), str(d / "evaluation.json"),
         str(ref / "molecule.xyz"), str(d / "logs/evaluate.log"))])
    return d


# ---------------------------------------------------------------------- analysis
def _dihedral(p0, p1, p2, p3) -> np.ndarray:
    """Dihedral angles (degrees) of (F, 3) point arrays."""
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    v = b0 - (b0 * b1n).sum(-1, keepdims=True) * b1n
    w = b2 - (b2 * b1n).sum(-1, keepdims=True) * b1n
    x = (v * w).sum(-1)
    y = (np.cross(b1n, v) * w).sum(-1)
    return np.degrees(np.arctan2(y, x))


def methyl_rotation(numbers, positions, reference_positions, until: int | None) -> float:
    """Largest rotation (degrees) of a terminal CH3 about its C–C axis, frames [0, until):
    the change of the H–C–C–C dihedrals from the first frame, averaged over the three H of
    the methyl (a rigid turn), maximised over frames and both ends. NaN if not an alkane end."""
    from rarelearn.chem.geometry import covalent_bonds

    z = np.asarray(numbers)
    pos = np.asarray(positions)[: until if until else None]
    if len(pos) < 2:
        return float("nan")
    bonds = covalent_bonds(z, reference_positions)
    nb = {i: set() for i in range(len(z))}
    for a, b in bonds:
        nb[int(a)].add(int(b))
        nb[int(b)].add(int(a))
    best = float("nan")
    for c0 in np.flatnonzero(z == 6):
        cs = [j for j in nb[c0] if z[j] == 6]
        hs = [j for j in nb[c0] if z[j] == 1]
        if len(cs) != 1 or len(hs) != 3:
            continue
        c1 = cs[0]
        c2s = [j for j in nb[c1] if z[j] == 6 and j != c0]
        if not c2s:
            continue
        c2 = c2s[0]
        d = np.stack([_dihedral(pos[:, h], pos[:, c0], pos[:, c1], pos[:, c2]) for h in hs])  # (3, F)
        delta = (d - d[:, :1] + 180.0) % 360.0 - 180.0
        rot = np.abs(delta.mean(axis=0)).max()
        best = rot if math.isnan(best) else max(best, float(rot))
    return best


def smd_geometry(molecule_xyz: Path, replica_paths) -> dict:
    """Bond/fragment flags and the two Fig. 4b / Note 2 indicators over a set of SMD replicas."""
    from rarelearn.dataset import read_frames
    from rarelearn.chem.molecules import load_prepared_molecule
    from rarelearn.chem.breaks import cc_bond_report

    atoms, g1, g2 = load_prepared_molecule(molecule_xyz)
    rows = []
    for p in replica_paths:
        fr = read_frames(p)
        if len(fr) == 0:
            rows.append({"frames": 0})
            continue
        rep = cc_bond_report(fr.numbers, fr.positions, atoms.positions, pulled=(g1[0], g2[0]))
        fb = rep["first_break"]
        lengths = rep["bond_lengths"]
        last_intact = (fb - 1) if fb else len(fr) - 1
        second = float(np.sort(lengths[max(last_intact, 0)])[-2]) if lengths.shape[1] > 1 else float("nan")
        rows.append({"frames": len(fr), "stop": fr.attrs.get("stop_reason"), "first_break": fb,
                     "multi_fragment_frames": int(rep["multi_fragment"].sum()),
                     "wrong_bond_frames": int(rep["wrong_bond_broken"].sum()),
                     "max_fragments": int(rep["n_fragments"].max()),
                     "end_fragments": int(rep["n_fragments"][-1]),
                     "second_cc_at_break": second,
                     "methyl_rotation_deg": methyl_rotation(fr.numbers, fr.positions, atoms.positions, fb)})
    ok = [r for r in rows if r["frames"]]
    return {
        "replicas": rows,
        "n": len(rows),
        "multi_fragment": sum(r["multi_fragment_frames"] > 0 for r in ok),
        "multi_fragment_frames": sum(r["multi_fragment_frames"] for r in ok),
        "wrong_bond": sum(r["wrong_bond_frames"] > 0 for r in ok),
        "wrong_bond_frames": sum(r["wrong_bond_frames"] for r in ok),
        "end_multi": sum(r["end_fragments"] > 2 for r in ok),
        "max_fragments": max((r["max_fragments"] for r in ok), default=0),
        "no_break": sum(r["first_break"] is None for r in ok),
        "stopped": sum(r["stop"] != "completed" for r in ok) + (len(rows) - len(ok)),
        "second_cc_at_break": float(np.nanmean([r["second_cc_at_break"] for r in ok])) if ok else float("nan"),
        "methyl_rotation_deg": float(np.nanmax([r["methyl_rotation_deg"] for r in ok])) if ok else float("nan"),
    }


def _row(label: str, ev: dict | None, geo: dict, train_frames: int | None = None) -> dict:
    r = {"label": label, "train_frames": train_frames, **{k: v for k, v in geo.items() if k != "replicas"}}
    if ev is not None:
        r.update({"abs_dea_kcal": ev["abs_delta_ea_kcal"], "se_kcal": ev["delta_ea_stderr_kcal"],
                  "dea_kcal": ev["delta_ea_kcal"], "ea": ev["nnp_ea_mean"],
                  "e_mae_mev": 1000 * ev["unseen_energy_mae"], "f_mae_mev": 1000 * ev["unseen_force_mae"]})
    return r


HEADER = (f"{'':34} {'train':>5} {'|dEa|':>6} {'± SE':>5} {'>2 frags':>10} {'end':>3} {'max':>3} "
          f"{'other C-C':>10} {'no':>3} {'blow':>4} {'2nd C-C':>7} {'CH3 rot':>7} {'unseen E':>8} {'unseen F':>8}\n"
          f"{'':34} {'set':>5} {'kcal':>6} {'':>5} {'rep frames':>10} {'>2':>3} {'frg':>3} "
          f"{'rep frames':>10} {'brk':>3} {'up':>4} {'Å':>7} {'deg':>7} {'meV':>8} {'meV/Å':>8}")


def _fmt(r: dict) -> str:
    def f(key, spec, nan="-"):
        v = r.get(key)
        return nan if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    mf = f"{r['multi_fragment']}/{r['n']} {r['multi_fragment_frames']}"
    wb = f"{r['wrong_bond']}/{r['n']} {r['wrong_bond_frames']}"
    return (f"{r['label']:34} {f('train_frames', '5d'):>5} {f('abs_dea_kcal', '6.1f'):>6} {f('se_kcal', '5.1f'):>5} "
            f"{mf:>10} {r['end_multi']:>3} {r['max_fragments']:>3} {wb:>10} "
            f"{r['no_break']:>3} {r['stopped']:>4} {f('second_cc_at_break', '7.3f'):>7} {f('methyl_rotation_deg', '7.1f'):>7} "
            f"{f('e_mae_mev', '8.0f'):>8} {f('f_mae_mev', '8.0f'):>8}")


def report(work: dict, cfgs: dict, out: Path, sampled_at: int) -> dict:
    ref = work["ani"] / "results/reference"
    mol = ref / "molecule.xyz"
    n_rep = cfgs["ani"]["reference"]["replicas"]
    result: dict = {"sampled_at": sampled_at, "campaigns": {}, "cells": {}}
    ref_geo = smd_geometry(mol, [ref / f"smd/replica_{r:02d}.h5" for r in range(n_rep)])
    result["reference"] = _row("reference (GFN2-xTB)", None, ref_geo)
    print("\nPer campaign iteration (SMD replicas with the reference's seeds):")
    print(HEADER)
    print(_fmt(result["reference"]))
    for fam in FAMILIES:
        rows = []
        i = 0
        while (work[fam] / f"results/iter_{i:03d}/evaluation.json").exists():
            d = work[fam] / f"results/iter_{i:03d}"
            ev = json.loads((d / "evaluation.json").read_text())
            geo = smd_geometry(mol, [d / f"smd/replica_{r:02d}.h5" for r in range(n_rep)])
            rows.append(_row(f"{fam} iteration {i}", ev, geo, ev["dataset_frames"] - ev["frames_added"]))
            print(_fmt(rows[-1]))
            i += 1
        result["campaigns"][fam] = rows
    print(f"\nCross-sampling: each family trained on its iteration-{sampled_at} training set + the frames "
          f"one family's iteration-{sampled_at} SMD sampled (= iteration {sampled_at + 1} of the trained family):")
    print(HEADER)
    for trained in FAMILIES:
        for sampler in FAMILIES:
            d = cell_dir(out, trained, sampler, sampled_at)
            if trained == sampler and own_in_campaign(work[trained], sampled_at):
                d = work[trained] / f"results/iter_{sampled_at + 1:03d}"  # the campaign's own iteration
            if not (d / "evaluation.json").exists():
                print(f"{trained + ' on ' + sampler + ' frames':34} (not run)")
                continue
            ev = json.loads((d / "evaluation.json").read_text())
            geo = smd_geometry(mol, [d / f"smd/replica_{r:02d}.h5" for r in range(n_rep)])
            label = f"{trained} on {sampler}-sampled frames"
            n_train = (ev["dataset_frames"] - ev["frames_added"]) if d.parent.name == "results" \
                else json.loads((d / "merge.json").read_text())["total_frames"]
            r = _row(label, ev, geo, n_train)
            r["source"] = str(d)
            result["cells"][f"{trained}_on_{sampler}"] = r
            print(_fmt(r))
    print("\nColumns: |dEa| = |mean E_a(potential) - mean E_a(reference)| over the replicas, ± its standard error; "
          "train set = frames trained on; >2 frags / other C-C = replicas (of n) with more than two "
          "fragments / a C-C bond other than the stretched one above 1.98 Å in any frame, and the number of such "
          "frames; end >2 = replicas still in more than two pieces at the end of the pull; max frg = most "
          "fragments in any frame; no brk = replicas where no C-C bond broke; "
          "blow up = replicas the SMD blow-up check stopped (atoms < 0.5 Å apart, forces > 50 eV/Å, ...); "
          "2nd C-C = second-longest C-C bond at the last intact frame (two long C-C bonds, Fig. 4b iii), mean; "
          "CH3 rot = largest rigid rotation of a terminal methyl before the break (SI Note 2); unseen E/F = "
          "ensemble-mean energy / force-component MAE on the unseen reference SMD frames.")
    return result


# ---------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ani", required=True, type=Path, help="finished ANI campaign workdir")
    p.add_argument("--schnet", required=True, type=Path, help="finished SchNet campaign workdir")
    p.add_argument("--out", required=True, type=Path, help="folder for the cross-trained cells")
    p.add_argument("--sampled-at", type=int, default=0, help="acquisition round whose frames are swapped (0)")
    p.add_argument("--ani-config", nargs="+", type=Path,
                   default=[REPO / "config/config.yaml", REPO / "benchmarks/configs/ani_study.yaml"])
    p.add_argument("--schnet-config", nargs="+", type=Path,
                   default=[REPO / "config/config.yaml", REPO / "benchmarks/configs/schnet_study.yaml"])
    p.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    p.add_argument("--only", choices=FAMILIES, default=None, help="train only this family's cross cell")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)

    work = {"ani": args.ani.resolve(), "schnet": args.schnet.resolve()}
    cfgs = {"ani": load_config(args.ani_config), "schnet": load_config(args.schnet_config)}
    i = args.sampled_at
    for fam in FAMILIES:
        check_campaign(work[fam], cfgs[fam], fam, i + 1)
    check_same_reference(work["ani"], work["schnet"], cfgs["ani"], cfgs["schnet"])
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if not args.report_only:
        import multiprocessing as mp

        cells = [(a, b) for a in FAMILIES for b in FAMILIES]
        if args.only:
            cells = [c for c in cells if c[0] == args.only]
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker) as pool:
            for a, b in cells:
                if a == b and own_in_campaign(work[a], i):
                    continue  # the campaign's iteration i+1 is this cell
                tc = time.time()
                build_cell(pool, args.out, a, b, i, work, cfgs)
                print(f"[{a} on {b}] done in {time.time() - tc:.0f} s", flush=True)
    result = report(work, cfgs, args.out, i)
    result["wall_seconds"] = time.time() - t0
    from rarelearn.jsonio import write_json

    write_json(args.out / f"cross_sampling_iter{i:03d}.json", result)
    print(f"\nwritten {args.out / f'cross_sampling_iter{i:03d}.json'}; {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
