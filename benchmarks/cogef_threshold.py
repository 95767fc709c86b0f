"""How the COGEF maximum depends on the stable-branch check's threshold (``instability_tol``).

The stable-branch scan (``rarelearn.md.cogef``) moves an intact image off a saddle when the
lowest eigenvalue of its constrained Hessian is below ``-instability_tol`` (0.005 eV/Å²
by default; a fixed 0.05 before 2026-12-02). The intact branch of a chain pulled at both ends ends where that eigenvalue
crosses zero; with a threshold the scan ends it later, where the eigenvalue reaches
``-instability_tol``. This script scans the prepared molecule of a campaign with the
labeller (GFN2-xTB) and with the members of one iteration, once per threshold, and prints
E_max, where the branch ends, and ΔE_max against the labeller's scan at the same threshold;
then the lowest eigenvalue along the labeller's own intact images near the end of its
branch (where it crosses zero).

    python benchmarks/cogef_threshold.py --campaign /tmp/dj --iteration 5 --tol 0.05 0.02 0.005
    python benchmarks/cogef_threshold.py --alkanes 2 4 8 --tol 0.05 0.005     # GFN2-xTB only, built chains

Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from rarelearn.chem.molecules import load_prepared_molecule
from rarelearn.md.cogef import cogef_profile
from rarelearn.md.hessian import lowest_constrained_mode
from rarelearn.models.files import load_model, make_calculator
from rarelearn.units import KCAL_MOL_PER_EV

STEP = 0.1      # Å, the config's default scan step
HEADER = f"{'tol eV/A2':>9} {'E_max eV':>9} {'at dA':>7} {'break':>9} {'left saddle':>11}"


def _row(tol: float, p) -> str:
    """One scan's columns under HEADER."""
    s = p.summary()
    left = s.get("left_saddle_at")
    return (f"{tol:>9.3f} {p.e_max:>9.4f} {p.extension_at_max:>7.4f} {s.get('broken_label') or '-':>9} "
            f"{left if left is None else round(left, 4)!s:>11}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaign", type=Path, help="a campaign's working directory")
    ap.add_argument("--iteration", type=int)
    ap.add_argument("--alkanes", type=int, nargs="*", help="instead: GFN2-xTB on built n-alkanes (carbon counts), "
                    "pulled at their terminal carbons to 4 Å")
    ap.add_argument("--tol", type=float, nargs="+", default=[0.05, 0.02, 0.005], help="instability_tol, eV/Å²")
    ap.add_argument("--members", type=int, nargs="*", default=None, help="members to scan (default all)")
    ap.add_argument("--eigen-window", type=float, default=0.1,
                    help="Å before the labeller's break at which its intact images' lowest eigenvalue is printed (0: none)")
    args = ap.parse_args(argv)
    if args.alkanes:
        return _alkanes(args.alkanes, args.tol)
    if args.campaign is None or args.iteration is None:
        ap.error("--campaign and --iteration, or --alkanes")

    res = args.campaign / "results"
    it = res / f"iter_{args.iteration:03d}"
    atoms, g1, g2 = load_prepared_molecule(res / "reference" / "molecule.xyz")
    pull = (g1[0], g2[0])
    from rarelearn.chem.labellers import make_labeller

    labeller = make_labeller("gfn2-xtb", {})
    ens = load_model(it / "ensemble.pt")
    members = range(ens.n_members) if args.members is None else args.members
    drivers = [("gfn2-xtb", labeller.calculator)] + [
        (f"member {k}", (lambda k=k: make_calculator(ens, member=k))) for k in members]

    print(f"{args.campaign} iteration {args.iteration}; {len(atoms)} atoms, pull {pull}, step {STEP} Å")
    print(f"{'driver':>10} {HEADER} {'dE_max kcal':>11} {'s':>5}")
    ref_emax, ref_profiles = {}, {}
    for name, calc in drivers:
        for tol in args.tol:
            t0 = time.time()
            p = cogef_profile(atoms, calc(), pull, step=STEP, instability_tol=tol)
            if name == "gfn2-xtb":
                ref_emax[tol], ref_profiles[tol] = p.e_max, p
            d = (p.e_max - ref_emax[tol]) * KCAL_MOL_PER_EV
            print(f"{name:>10} {_row(tol, p)} {d:>+11.2f} {time.time() - t0:>5.0f}", flush=True)

    if args.eigen_window <= 0:
        return 0
    # the labeller's lowest eigenvalue along its own intact images before the break
    p = ref_profiles[max(args.tol)]
    end = p.extension_at_max
    print(f"\ngfn2-xtb, tol {max(args.tol)}: lowest constrained eigenvalue on its intact images "
          f"within {args.eigen_window} Å of the end of its branch ({end:.4f} Å)")
    print(f"{'dA':>8} {'E eV':>8} {'F eV/A':>7} {'lowest eV/A2':>13}")
    calc = labeller.calculator()
    for k in np.flatnonzero(p.intact):
        if p.extension[k] < end - args.eigen_window:
            continue
        a = atoms.copy()
        a.positions = p.frames.positions[k]
        w, _ = lowest_constrained_mode(a, calc, pull)
        print(f"{p.extension[k]:>8.4f} {p.energy[k]:>8.4f} {p.force[k]:>7.3f} {w:>13.4f}", flush=True)
    return 0


def _alkanes(carbons, tols) -> int:
    from rarelearn.chem.labellers import make_labeller
    from rarelearn.chem.molecules import build_alkane, terminal_carbons

    labeller = make_labeller("gfn2-xtb", {})
    print(f"{'molecule':>8} {HEADER} {'s':>5}")
    for n in carbons:
        atoms = build_alkane(n)
        e = []
        for tol in tols:
            t0 = time.time()
            p = cogef_profile(atoms, labeller.calculator(), terminal_carbons(atoms), step=STEP, max_extension=4.0,
                              instability_tol=tol)
            e.append(p.e_max)
            print(f"{'C' + str(n):>8} {_row(tol, p)} {time.time() - t0:>5.0f}", flush=True)
        print(f"{'':>8} E_max at tol {tols[0]} minus at {tols[-1]}: {(e[0] - e[-1]) * KCAL_MOL_PER_EV:+.2f} kcal/mol")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
