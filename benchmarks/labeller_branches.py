"""Where the labeller goes from the potential's COGEF path (issues 17, 21: which bond breaks).

Each relaxed image of an iteration's COGEF path (the best member's, ``results/iter_NNN/
cogef.h5``) from ``--from`` Å of extension up to the path's break is relaxed by the labeller
under the same constraint (end-to-end distance of the pulled atoms fixed, ASE
``FixBondLength`` + BFGS to ``--fmax``), and compared with the reference's own COGEF profile
(``results/reference/cogef.h5``) at the same pulled distance (interpolated): does the
labeller have a branch of its own there, or does it fall back onto its path? Then, from the
last image, the labeller's relaxed structure is pulled on in steps of ``--step`` Å (each
image relaxed from the one before) for ``--scan`` Å: the energy of that basin against the
reference's profile (past its break: its fragments' plateau). C–C lengths are along the
chain from the first pulled atom (an n-alkane's carbons 0..n-1).

    python benchmarks/labeller_branches.py --campaign /tmp/d --iteration 2

Run on demand; not a test. One labeller relaxation per image (tens of BFGS steps each).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from rarelearn.config import campaign_config
from rarelearn.dataset import read_frames
from rarelearn.units import KCAL_MOL_PER_EV


def _chain(numbers) -> list[int]:
    return [k for k, z in enumerate(numbers) if z == 6]


def _cc(pos, chain) -> str:
    return " ".join(f"{np.linalg.norm(pos[a] - pos[b]):.2f}" for a, b in zip(chain, chain[1:]))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--campaign", type=Path, required=True)
    p.add_argument("--iteration", type=int, required=True)
    p.add_argument("--from", dest="x_from", type=float, default=1.8, help="smallest extension relaxed, Å")
    p.add_argument("--fmax", type=float, default=0.01, help="eV/Å")
    p.add_argument("--step", type=float, default=0.1, help="Å, pulling on from the last image")
    p.add_argument("--scan", type=float, default=1.0, help="Å pulled on from the last image")
    args = p.parse_args(argv)

    from ase import Atoms
    from ase.constraints import FixBondLength
    from ase.optimize import BFGS

    from rarelearn.chem.labellers import make_labeller

    cfg = campaign_config()
    lab = make_labeller(cfg["labeller"]["name"], cfg["labeller"].get("options") or {})
    ref = read_frames(args.campaign / "results" / "reference" / "cogef.h5")
    pot = read_frames(args.campaign / "results" / f"iter_{args.iteration:03d}" / "cogef.h5")
    i, j = (int(a) for a in pot.attrs["pull"])
    chain = _chain(pot.numbers)
    o = np.argsort(ref.extras["distance"])
    r_d, r_e = np.asarray(ref.extras["distance"])[o], ref.energy[o]
    r_x, e0 = np.asarray(ref.extras["extension"])[o], r_e[0]
    print(f"reference: E_max {r_e.max() - e0:.3f} eV above its start at extension {r_x[np.argmax(r_e)]:.3f} Å; "
          f"C-C at the maximum {_cc(ref.positions[o][np.argmax(r_e)], chain)}; labeller {cfg['labeller']['name']}")

    def relax(atoms, d=None):
        if d is not None:   # move the pulled atoms apart along their axis to distance d
            v = atoms.positions[j] - atoms.positions[i]
            shift = (d - np.linalg.norm(v)) / 2 * v / np.linalg.norm(v)
            atoms.positions[i] -= shift
            atoms.positions[j] += shift
        atoms.set_constraint(FixBondLength(i, j))
        opt = BFGS(atoms, logfile=None)
        conv = opt.run(fmax=args.fmax, steps=500)
        atoms.set_constraint()
        return atoms.get_potential_energy(), opt.nsteps, conv

    def versus_reference(e, atoms):
        d = np.linalg.norm(atoms.positions[j] - atoms.positions[i])
        return d - ref.attrs["d0"], (e - np.interp(d, r_d, r_e)) * KCAL_MOL_PER_EV

    print(f"\nthe potential's path (iteration {args.iteration}) relaxed by the labeller under its constraint:")
    print(f"{'ext A':>6} {'path C-C (A)':>26} {'single pt':>10} {'relaxed C-C (A)':>26} {'E - ref':>8} "
          "kcal/mol  steps")
    xs = np.asarray(pot.extras["extension"])
    last = None
    for k in np.argsort(xs):
        if xs[k] < args.x_from or not pot.extras["intact"][k]:
            continue
        t0 = time.time()
        a = Atoms(numbers=pot.numbers, positions=pot.positions[k])
        a.calc = lab.calculator()
        _, d_single = versus_reference(a.get_potential_energy(), a)
        e, n, conv = relax(a)
        x, d_relaxed = versus_reference(e, a)
        print(f"{x:6.3f} {_cc(pot.positions[k], chain):>26} {d_single:+10.1f} {_cc(a.positions, chain):>26} "
              f"{d_relaxed:+8.1f}          {n}{'' if conv else ' (unconverged)'}  {time.time() - t0:.0f} s", flush=True)
        last = a
    if last is None:
        return
    print(f"\npulled on from the last relaxed image, {args.step} Å at a time:")
    d = np.linalg.norm(last.positions[j] - last.positions[i])
    for d_k in d + np.arange(args.step, args.scan + 1e-9, args.step):
        e, n, conv = relax(last, d_k)
        x, diff = versus_reference(e, last)
        print(f"{x:6.3f} C-C {_cc(last.positions, chain):>26}  {e - e0:6.3f} eV above the reference's start, "
              f"{diff:+6.1f} kcal/mol against its profile ({n} steps{'' if conv else ', unconverged'})", flush=True)


if __name__ == "__main__":
    main()
