"""Dense labels where the chain gives way (issue 20): how many labels near the break does a
committee need before its COGEF maximum is within 1 kcal/mol of the labeller's?

Every campaign so far placed the break 0.02–0.2 Å off GFN2-xTB's (each 0.01 Å ≈ 1 kcal/mol
at hexane's ~4.7 eV/Å pull force), iteration after iteration. This asks whether data can pin
it at all, before asking a sampler to find that data: the labeller's own thermal
configurations along its loaded chain near the break (constrained MD: the pulled atoms'
distance fixed at the reference COGEF images' extensions within ``--window`` Å below the
break and ``--above`` Å above it (``--center f_max``: around the force maximum instead), at least 0.01 Å apart, ``--temperature`` K, Langevin, every
``--record-every`` steps labelled by the MD's own labeller call), added ``--local`` at a time to the campaign's
MD set; members trained from scratch on each set; each member's own COGEF maximum and
break against the labeller's, and its errors on separate constrained-MD test frames.

    snakemake --cores 2 results/reference/md.h5 results/reference/cogef.json \\
        results/reference/atom_energies.json --configfile config/config.yaml config/branch.yaml \\
        --directory /tmp/dense
    python benchmarks/dense_break.py --campaign /tmp/dense --local 0 200 800 --members 0 1 2

The local frames are made once and kept (``DIR/dense/local.h5``, ``test.h5``); their order
interleaves the extensions, so the first ``n`` frames cover every extension; every trained
member is kept as ``DIR/dense/models/local<n>_member<k>.pt``. Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rarelearn.chem.labellers import make_labeller
from rarelearn.chem.molecules import load_prepared_molecule
from rarelearn.config import campaign_config
from rarelearn.dataset import Frames, read_frames, write_frames
from rarelearn.learning.fit import train_member
from rarelearn.learning.members import fitted_self_energies, model_spec, train_config
from rarelearn.learning.splits import random_split, seed_for
from rarelearn.models.files import load_model, read_model_blob, save_model
from training_schedule import _cogef, parse


def constrained_md(start: Frames, k: int, pull, labeller, temperature_K: float, n_frames: int,
                   record_every: int, seed: int, timestep_fs: float = 0.5) -> Frames:
    """``n_frames`` labelled frames of Langevin MD from image ``k`` of ``start`` with the
    distance of the atoms ``pull`` fixed; energies and (unconstrained) forces are the
    labeller's of the MD step itself."""
    from ase import units
    from ase.constraints import FixBondLength
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = start.to_atoms(k)
    atoms.calc = labeller.calculator()
    atoms.set_constraint(FixBondLength(int(pull[0]), int(pull[1])))
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    dyn = Langevin(atoms, timestep=timestep_fs * units.fs, temperature_K=temperature_K,
                   friction=0.01 / units.fs, rng=rng)
    pos, ene, frc = [], [], []
    for _ in range(n_frames):
        dyn.run(record_every)
        pos.append(atoms.positions.copy())
        ene.append(float(atoms.get_potential_energy()))
        frc.append(atoms.get_forces(apply_constraint=False).copy())
    ext = float(start.extras["extension"][k])
    return Frames(start.numbers, np.array(pos), np.array(ene), np.array(frc), source="dense",
                  labeller=labeller.name, extras={"extension": np.full(n_frames, ext)})


def local_frames(ref_dir: Path, out: Path, cfg: dict, args) -> tuple[Frames, Frames]:
    """The train pool (interleaved over extensions) and the test frames, made once, from the
    reference stage in ``ref_dir`` (a one-molecule campaign's results/reference, or a family's
    results/reference/molecules/NAME)."""
    if (out / "local.h5").exists() and (out / "test.h5").exists():
        return read_frames(out / "local.h5"), read_frames(out / "test.h5")
    _, g1, g2 = load_prepared_molecule(ref_dir / "molecule.xyz")
    ref = json.loads((ref_dir / "cogef.json").read_text())
    path = read_frames(ref_dir / "cogef.h5")
    ext, intact = path.extras["extension"], path.extras["intact"] > 0
    b = ref["break_extension"] if args.center == "break" else ref["extension_at_f_max"]
    ks = []     # images from the centre down and from it up, at least 0.01 Å apart
    if args.center == "break":
        sides = (intact & (ext >= b - args.window), ~intact & (ext >= b) & (ext <= b + args.above))
    else:       # the loaded chain around its force maximum: intact images on both sides
        sides = (intact & (ext >= b - args.window) & (ext <= b + args.above),)
    for side in sides:
        for k in sorted(np.flatnonzero(side), key=lambda k: abs(ext[k] - b)):
            if all(abs(ext[k] - ext[q]) >= 0.01 for q in ks if intact[q] == intact[k]):
                ks.append(int(k))
    ks = sorted(ks, key=lambda k: ext[k])
    lab = make_labeller(cfg["labeller"]["name"], cfg["labeller"].get("options") or {})
    per = -(-args.pool // len(ks))
    pools, tests = [], []
    t0 = time.time()
    for n, k in enumerate(ks):
        pools.append(constrained_md(path, k, (g1[0], g2[0]), lab, args.temperature, per, args.record_every, 2 * n))
        tests.append(constrained_md(path, k, (g1[0], g2[0]), lab, args.temperature, args.test_per_extension,
                                    args.record_every, 2 * n + 1))
        print(f"  constrained MD at Δ {ext[k]:.3f} Å ({'intact' if intact[k] else 'broken'} image): "
              f"{per} + {args.test_per_extension} frames, {time.time() - t0:.0f} s", flush=True)
    order = [(n, t) for t in range(per) for n in range(len(ks))]
    pool = Frames.concatenate([pools[n].subset([t]) for n, t in order])
    test = Frames.concatenate(tests)
    out.mkdir(parents=True, exist_ok=True)
    write_frames(out / "local.h5", pool)
    write_frames(out / "test.h5", test)
    return pool, test


def training_set(parts: list[Frames]):
    """The parts as one training set: one :class:`Frames` where all are of one molecule, else
    a :class:`rarelearn.frameset.FrameSet` with one part per molecule (``--extra`` files of
    other molecules, e.g. a family's propane and butane frames)."""
    from rarelearn.frameset import FrameSet

    groups: dict[tuple, list[Frames]] = {}
    for part in parts:
        groups.setdefault(tuple(part.numbers.tolist()), []).append(part)
    merged = [Frames.concatenate(g) for g in groups.values()]
    return merged[0] if len(merged) == 1 else FrameSet(merged)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--campaign", required=True, type=Path, help="a work directory with the reference stage")
    p.add_argument("--local", type=int, nargs="+", default=[0, 200, 800], help="local frames added to the MD set")
    p.add_argument("--members", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--schedule", default="epochs=100,lr_patience=3,early_stopping_patience=15,lr=0.0003",
                   help="key=value,... over training.*")
    p.add_argument("--center", choices=("break", "f_max"), default="break",
                   help="the images around the reference's break, or around its force maximum (intact images "
                        "only: a short chain's loaded chain where it gives way, issue 20)")
    p.add_argument("--window", type=float, default=0.3, help="Å below the centre")
    p.add_argument("--above", type=float, default=0.1, help="Å above the centre (at the break: broken images)")
    p.add_argument("--pool", type=int, default=800, help="local frames made (the largest --local)")
    p.add_argument("--test-per-extension", type=int, default=10)
    p.add_argument("--temperature", type=float, default=150.0)
    p.add_argument("--record-every", type=int, default=10)
    p.add_argument("--extra", type=Path, nargs="*", default=[], help="labelled frame files added to every training set")
    p.add_argument("--tag", default="", help="prefix of the saved members' file names")
    p.add_argument("--reference", type=Path, help="the molecule's reference folder (default CAMPAIGN/results/reference; "
                   "a family's: CAMPAIGN/results/reference/molecules/NAME)")
    p.add_argument("--out", type=Path, help="where the frames and members go (default CAMPAIGN/dense)")
    p.add_argument("--frames-only", action="store_true", help="make the local and test frames, train nothing")
    p.add_argument("--start-from", type=Path, help="a one-member model file every member starts from (warm start; "
                   "same MD set, so same self energies and spec) instead of random weights")
    args = p.parse_args(argv)
    res = args.campaign / "results"
    cfg = campaign_config()
    ref_dir = args.reference or res / "reference"
    out = args.out or args.campaign / "dense"
    pool, test = local_frames(ref_dir, out, cfg, args)
    if args.frames_only:
        print(f"{len(pool)} local frames, {len(test)} test frames in {out}")
        return 0
    md = read_frames(res / "reference" / "md.h5")
    atom_energies = json.loads((res / "reference" / "atom_energies.json").read_text())["energies"]
    spec = model_spec(cfg["model"], cfg["molecule"]["elements"], fitted_self_energies(atom_energies, md))
    training = {**cfg["training"], **parse(args.schedule)}
    tcfg = train_config(training)
    init = read_model_blob(args.start_from)["members"][0] if args.start_from else None
    ref = json.loads((res / "reference" / "cogef.json").read_text())
    print(f"MD set {len(md)} frames; local pool {len(pool)}, test {len(test)} (Δ {test.extras['extension'].min():.2f}"
          f"–{test.extras['extension'].max():.2f} Å, {args.temperature:.0f} K); reference COGEF E_max "
          f"{ref['e_max']:.3f} eV, F_max {ref['f_max']:.2f} eV/Å, break at Δ {ref['break_extension']:.3f} Å")
    print(f"{'local':>5} {'member':>6} {'epochs':>6} {'val E':>6} {'val F':>6} {'test E':>6} {'test F':>6} "
          f"{'dEmax':>7} {'break':>6} {'dE_end@ext':>13} {'bond':>6} {'s':>5}")
    print(f"{'':>5} {'':>6} {'':>6} {'meV':>6} {'meV/A':>6} {'meV':>6} {'meV/A':>6} {'kcal':>7} {'A':>6} {'kcal@A':>13}")
    for n in args.local:
        frames = training_set([md, pool.subset(np.arange(n)), *map(read_frames, args.extra)])
        for member in args.members:
            seed = seed_for(0, member)
            tr, va = random_split(len(frames), seed, tcfg.train_fraction)
            t0 = time.time()
            state, h = train_member(frames, tr, va, spec, tcfg, seed=seed, init_state=init, log=lambda s: None)
            saved = out / "models" / f"{args.tag}local{n}_member{member}.pt"
            saved.parent.mkdir(parents=True, exist_ok=True)
            save_model(saved, [state], spec, meta={"history": h, "schedule": args.schedule,
                                                   "start_from": str(args.start_from or "")})
            model = load_model(saved)
            e, f = model.energies_forces(test.numbers, test.positions)
            test_e = 1000 * np.abs(e[0] - test.energy).mean()
            test_f = 1000 * np.abs(f[0] - test.forces).mean()
            cogef = _cogef(model, res, cfg["cogef"])
            print(f"{n:>5} {member:>6} {h['epochs_run']:>6} {1000 * h['val_energy_mae']:>6.1f} "
                  f"{1000 * h['val_force_mae']:>6.1f} {test_e:>6.1f} {test_f:>6.1f}{cogef} {time.time() - t0:>5.0f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
