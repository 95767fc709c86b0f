"""Batched potential SMD against one job per replica (issue 17).

Times hexane SMD of a committee's best member, default networks (config: H 256-192-160,
C 224-192-160, 3 members), in one process:

* unbatched: what rule ``smd`` runs once per replica, ``run_smd`` with the ASE calculator
  ``NNPCalculator(member=best)`` (every member's energy, the best member's forces, one
  frame per call), for ``--alone`` replicas one after another. The per-job start-up of
  the workflow (Python, torch, model file: a few seconds per job) is not counted, which
  favours this path;
* batched: what rule ``smd_batch`` runs, ``run_smd_batch`` with ``member_evaluator`` (the
  best member on all replicas in one forward and one backward call per step), for 1, 8,
  64 and 256 replicas;
* the bare batched model call on B hexanes, the floor of the batched path.

Each run is ``--relax`` + ``--pull`` steps (the protocol's 2000 + 6500 shortened: the cost
per step is what is measured; a run's wall time includes its set-up). ms/replica-step is
the wall time over the steps the replicas actually ran (a replica that blows up stops).

Without ``--model`` a member with the default networks is trained briefly (GFN2-xTB MD of
hexane at 500 K and one fast pull, ~270 frames, 30 epochs) so that the pulls hold
together, and cached at ``--cache``; its three members are copies of it (the cost does not
depend on the weights). With ``--model``/``--best`` a campaign's trained committee is used.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/smd_batch.py [--sizes 1 8 64 256] [--relax 50 --pull 150]
        [--model results/iter_002/ensemble.pt --best results/iter_002/best.json] [--device cuda]

The last line reads ``per-replica cost at 64 / at 256: R; unbatched / batched-64 per replica: S``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from rarelearn.md.batched_smd import member_evaluator, run_smd_batch, split_batch
from rarelearn.md.dynamics import SMDProtocol, run_smd
from rarelearn.models.ani import NNPCalculator, make_spec
from rarelearn.chem.molecules import load_molecule
from rarelearn.models.files import load_model


def trained_member(cache: Path, molecule):
    """A default-network ANI committee of three copies of one briefly trained member."""
    from tblite.ase import TBLite

    from rarelearn.dataset import merge_frames
    from rarelearn.md.dynamics import run_md
    from rarelearn.chem.labellers import make_labeller
    from rarelearn.models.files import save_ensemble
    from rarelearn.learning.members import fitted_self_energies
    from rarelearn.learning.fit import TrainConfig, train_member
    from rarelearn.learning.splits import random_split

    if not cache.exists():
        t0 = time.perf_counter()
        atoms = molecule.atoms

        def gfn2():
            return TBLite(method="GFN2-xTB", verbosity=0)

        md = run_md(atoms, gfn2(), 500.0, 150, seed=0, record_every=2, equilibration_steps=20, label_as="gfn2-xtb")
        pull = run_smd(atoms, gfn2(), molecule.group1, molecule.group2,
                       SMDProtocol(relax_steps=50, pull_steps=600, velocity=10.0, record_every=5), seed=0,
                       label_as="gfn2-xtb")
        data, _ = merge_frames([md, pull])
        atom_e = make_labeller("gfn2-xtb", {}).isolated_atom_energies(["H", "C"])
        spec = make_spec(["H", "C"], None, fitted_self_energies(atom_e, data))
        tr, va = random_split(len(data), 0)
        cfg = TrainConfig(epochs=30, batch_size=32, lr=1e-3, threads=torch.get_num_threads(), device="cpu")
        state, hist = train_member(data, tr, va, spec, cfg, seed=0, log=lambda s: None)
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_ensemble(cache, [state, state, state], spec, meta={"note": "benchmarks/smd_batch.py quick member"})
        print(f"trained a default-network member on {len(data)} GFN2-xTB frames in "
              f"{time.perf_counter() - t0:.0f} s (val force MAE {hist['val_force_mae']:.2f} eV/A) -> {cache}")
    return load_model(cache), 0


def bare_model_ms(evaluate, x0: np.ndarray, b: int) -> float:
    rng = np.random.default_rng(0)
    x = x0[None] + rng.normal(0.0, 0.02, (b, *x0.shape))
    evaluate(x)
    n = max(2, min(20, 200 // b))
    best = np.inf
    for _ in range(2):
        t0 = time.perf_counter()
        for _ in range(n):
            evaluate(x)
        best = min(best, (time.perf_counter() - t0) / n)
    return 1e3 * best


def _device_name(device) -> str:
    if torch.device(device).type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64, 256], help="replicas per batch")
    ap.add_argument("--alone", type=int, default=4, help="replicas timed on the unbatched path")
    ap.add_argument("--relax", type=int, default=50, help="relax steps per run")
    ap.add_argument("--pull", type=int, default=150, help="pull steps per run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--model", type=Path, help="committee file (default: a briefly trained member)")
    ap.add_argument("--best", help="best member: an index or a best.json (default 0)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/rarelearn_smd_batch_member.pt"))
    ap.add_argument("--device", default="cpu", help="where the model runs: cpu (default), cuda, cuda:1, ...")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    mol = load_molecule({"alkane": 6}, elements=["H", "C"])
    atoms, g1, g2 = mol.atoms, mol.group1, mol.group2
    if args.model is not None:
        ens = load_model(args.model)
        best = 0 if args.best is None else (int(json.loads(Path(args.best).read_text())["best_member"])
                                            if args.best.endswith(".json") else int(args.best))
        source = f"{args.model}, member {best}"
    else:
        ens, best = trained_member(args.cache, mol)
        source = f"briefly trained default-network member ({args.cache})"
    ens.to(args.device)
    proto = SMDProtocol(relax_steps=args.relax, pull_steps=args.pull, velocity=1.0, record_every=1)
    steps = args.relax + args.pull
    hidden = ens.spec.get("hidden")
    print(f"hexane C6H14 ({len(atoms)} atoms), {source}; networks {hidden}, {ens.n_members} members, "
          f"{ens.dtype}; torch threads {torch.get_num_threads()}; model on {_device_name(ens.device)}")
    print(f"{steps} steps per run ({args.relax} relax + {args.pull} pull); load average at start "
          f"{os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")

    evaluate = member_evaluator(ens, best, atoms.numbers)
    print(f"{'path':<10}{'replicas':>9}{'instances':>10}{'ms/step':>10}{'ms/replica-step':>17}"
          f"{'bare model ms/replica':>23}{'completed':>11}")
    rows = {}
    seeds = [1000 + r for r in range(max(args.sizes + [args.alone]))]

    wall, rep_steps, done = 0.0, 0, 0
    for s in seeds[:args.alone]:
        t0 = time.perf_counter()
        fr = run_smd(atoms, NNPCalculator(ens, member=best), g1, g2, proto, seed=s)
        wall += time.perf_counter() - t0
        rep_steps += fr.attrs["relax_steps_done"] + fr.attrs["steps_done"]
        done += fr.attrs["stop_reason"] == "completed"
    rows["alone"] = 1e3 * wall / rep_steps
    print(f"{'unbatched':<10}{1:>9}{1:>10}{1e3 * wall / args.alone / steps:>10.2f}{rows['alone']:>17.3f}"
          f"{'':>23}{f'{done}/{args.alone}':>11}")

    for n in args.sizes:
        t0 = time.perf_counter()
        frames = run_smd_batch(atoms, evaluate, g1, g2, proto, seeds[:n])
        wall = time.perf_counter() - t0
        rep_steps = sum(fr.attrs["relax_steps_done"] + fr.attrs["steps_done"] for fr in frames)
        done = sum(fr.attrs["stop_reason"] == "completed" for fr in frames)
        rows[n] = 1e3 * wall / rep_steps
        bare = bare_model_ms(evaluate, atoms.positions, n) / n
        print(f"{'batched':<10}{n:>9}{len(split_batch(n)):>10}{1e3 * wall / steps:>10.2f}{rows[n]:>17.3f}"
              f"{bare:>23.3f}{f'{done}/{n}':>11}")
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    r = rows[64] / rows[256] if 64 in rows and 256 in rows else float("nan")
    s = rows["alone"] / rows[64] if 64 in rows else float("nan")
    print(f"per-replica cost at 64 / at 256: {r:.2f}; unbatched / batched-64 per replica: {s:.2f}")


if __name__ == "__main__":
    main()
