"""Training throughput: naive per-member loop vs shared-AEV ("fused") ensemble training.

Naive: ``train_member`` once per member with ``precompute="none"`` (AEVs computed and
differentiated twice in every step, what the stack notes measured). Fused:
``train_ensemble_fused`` (AEVs and their Jacobians computed once for all members,
each step runs only the element networks). Both train the same members (same splits,
seeds, config); the final validation errors should agree.

Throughput = training frames x epochs x members / wall seconds (precompute included).

Usage::

    python benchmarks/train_throughput.py --data data/md.h5 --members 3 --epochs 10
    python benchmarks/train_throughput.py --generate 2000 --members 3 --epochs 10  # hexane, GFN2-xTB MD

Prints one table and, with ``--json out.json``, writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def _generate(n_frames: int, n_carbons: int, seed: int):
    """NVT MD (500 K, 0.5 fs, Langevin) of an n-alkane with GFN2-xTB, every 2nd step kept."""
    from ase import units
    from ase.md.langevin import Langevin
    from tblite.ase import TBLite

    from rarelearn.dataset import Frames
    from rarelearn.chem.molecules import build_alkane

    atoms = build_alkane(n_carbons)
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    rng = np.random.default_rng(seed)
    dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=500, friction=0.02, fixcm=False, rng=rng)
    pos, e, f = [], [], []
    for _ in range(n_frames):
        dyn.run(2)
        pos.append(atoms.positions.copy())
        e.append(atoms.get_potential_energy())
        f.append(atoms.get_forces())
    return Frames(numbers=atoms.numbers, positions=np.array(pos), energy=np.array(e), forces=np.array(f),
                  source="md", labeller="gfn2-xtb")


def _atom_energies(symbols):
    """Isolated-atom energies (eV) of the labeller the frames come from (GFN2-xTB)."""
    from rarelearn.chem.labellers import make_labeller

    return make_labeller("gfn2-xtb").isolated_atom_energies(list(symbols))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="rarelearn HDF5 frame set (labelled)")
    src.add_argument("--generate", type=int, metavar="N", help="make N GFN2-xTB MD frames of an n-alkane")
    ap.add_argument("--carbons", type=int, default=6, help="alkane for --generate (default hexane)")
    ap.add_argument("--frames", type=int, default=None, help="use only the first N frames")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-naive", action="store_true", help="only time the fused training")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    import torch
    from ase.data import chemical_symbols

    from rarelearn.dataset import read_frames
    from rarelearn.models.ani import make_spec
    from rarelearn.learning.fit import TrainConfig, train_ensemble_fused, train_member
    from rarelearn.learning.splits import random_split, seed_for

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    frames = read_frames(args.data) if args.data else _generate(args.generate, args.carbons, seed=0)
    if args.frames:
        frames = frames.subset(np.arange(min(args.frames, len(frames))))
    frames = frames.subset(np.flatnonzero(frames.ok))
    t_data = time.perf_counter() - t0
    elements = [e for e in ("H", "C", "N", "O") if any(chemical_symbols[z] == e for z in frames.numbers)]
    spec = make_spec(elements, None, _atom_energies(elements))
    seeds = [seed_for(0, k) for k in range(args.members)]
    splits = [random_split(len(frames), s) for s in seeds]
    quiet = lambda msg: None  # noqa: E731
    n_work = sum(len(tr) for tr, _ in splits) * args.epochs
    results = {"frames": len(frames), "atoms": int(frames.n_atoms), "members": args.members,
               "epochs": args.epochs, "batch_size": args.batch_size, "threads": args.threads,
               "device": args.device, "data_seconds": t_data}

    rows = []
    if not args.skip_naive:
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, precompute="none", device=args.device,
                          log_every=0)
        t = time.perf_counter()
        naive = [train_member(frames, tr, va, spec, cfg, seed=s, log=quiet) for (tr, va), s in zip(splits, seeds)]
        sec = time.perf_counter() - t
        rows.append(("naive per-member", sec, naive))
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, precompute="jacobian", device=args.device,
                      log_every=0)
    t = time.perf_counter()
    fused = train_ensemble_fused(frames, splits, spec, cfg, seeds=seeds, log=quiet)
    sec = time.perf_counter() - t
    rows.append(("fused (shared AEV Jacobians)", sec, fused))

    print(f"{len(frames)} frames x {frames.n_atoms} atoms, {args.members} members, {args.epochs} epochs, "
          f"batch {args.batch_size}, {args.threads} threads")
    print(f"{'method':30s} {'seconds':>9s} {'s/epoch/member':>15s} {'frame-epochs/s':>15s} "
          f"{'val E MAE meV':>14s} {'val F MAE eV/A':>15s}")
    for name, sec, out in rows:
        e_mae = np.mean([h["val_energy_mae"] for _, h in out]) * 1000
        f_mae = np.mean([h["val_force_mae"] for _, h in out])
        spe = np.mean([h["seconds_per_epoch"] for _, h in out])
        print(f"{name:30s} {sec:9.1f} {spe:15.3f} {n_work / sec:15.1f} {e_mae:14.2f} {f_mae:15.4f}")
        key = "naive" if name.startswith("naive") else "fused"
        results[key] = {"seconds": sec, "seconds_per_epoch_per_member": float(spe),
                        "frame_epochs_per_second": n_work / sec, "val_energy_mae": float(e_mae / 1000),
                        "val_force_mae": float(f_mae),
                        "precompute_seconds": float(out[0][1]["precompute_seconds"])}
    if "naive" in results:
        results["speedup"] = results["naive"]["seconds"] / results["fused"]["seconds"]
        print(f"speed-up of fused over naive: {results['speedup']:.2f}x "
              f"(fused precompute {results['fused']['precompute_seconds']:.1f} s, shared by all members)")
    if args.json:
        from pathlib import Path

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
