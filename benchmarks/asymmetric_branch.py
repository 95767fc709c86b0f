"""Where the members' intact branch goes past GFN2-xTB's: their own COGEF images near the
end of the branch, labelled by the labeller, against what the members were trained on.

Prints, per member of one iteration: its training errors per source of the data set it was
trained on (energy offset removed on the MD frames), then along its own COGEF path from
``--from`` Å on (intact images), the C–C bond lengths, the largest and the RMS difference
between GFN2-xTB's forces and the member's (the pulled atoms' components along the pull
removed: the constraint holds them), and the committee's energy spread there.

    python benchmarks/asymmetric_branch.py --campaign /tmp/dj --iteration 7

Run on demand; not a test.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import Atoms

from rarelearn.chem.labellers import make_labeller
from rarelearn.chem.geometry import bond_lengths, covalent_bonds
from rarelearn.chem.molecules import load_prepared_molecule
from rarelearn.dataset import read_frames
from rarelearn.learning.uq import member_energies
from rarelearn.models.files import load_model, make_calculator


def _predict(calc, numbers, positions):
    a = Atoms(numbers=numbers, positions=positions)
    a.calc = calc
    return a.get_potential_energy(), a.get_forces()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaign", required=True, type=Path)
    ap.add_argument("--iteration", required=True, type=int, help=">= 1 (its data set is the iteration before's)")
    ap.add_argument("--from", dest="start", type=float, default=1.9, help="first extension shown, Å")
    ap.add_argument("--rows", type=int, default=10, help="images shown per member (evenly spaced, the last always)")
    args = ap.parse_args(argv)

    res = args.campaign / "results"
    it = res / f"iter_{args.iteration:03d}"
    ens = load_model(it / "ensemble.pt")
    data = read_frames(res / f"iter_{args.iteration - 1:03d}" / "merged.h5")
    src = np.asarray(data.source)
    mol, g1, g2 = load_prepared_molecule(res / "reference" / "molecule.xyz")
    i, j = g1[0], g2[0]
    print(f"{args.campaign} iteration {args.iteration}: {ens.n_members} members, trained on {len(data)} frames")
    for k in range(ens.n_members):
        calc = make_calculator(ens, member=k)
        pred = [_predict(calc, data.numbers, x) for x in data.positions]
        de = np.array([p[0] for p in pred]) - data.energy
        de -= np.median(de[src == "md"])
        df = np.array([np.abs(p[1] - f).mean() for p, f in zip(pred, data.forces)])
        print(f"member {k} training errors, energy meV / force meV/Å: " + ", ".join(
            f"{s} ({(src == s).sum()}) {1000 * np.abs(de[src == s]).mean():.0f} / {1000 * df[src == s].mean():.0f}"
            for s in sorted(set(src))))

    lab = make_labeller("gfn2-xtb").calculator()
    chain = covalent_bonds(mol.numbers, mol.positions)
    chain = chain[(mol.numbers[chain] > 1).all(axis=1)]          # between heavy atoms
    for k in range(ens.n_members):
        prof = read_frames(it / "cogef" / f"member_{k}.h5")
        ext = prof.extras["extension"]
        keep = [p for p in np.argsort(ext) if prof.extras["intact"][p] and ext[p] >= args.start - 1e-9]
        if not keep:
            continue
        sigma = member_energies(ens, prof.subset(np.array(keep))).std(axis=0)
        calc = make_calculator(ens, member=k)
        print(f"\nmember {k}: its own intact COGEF images from Δ {args.start} Å; force difference GFN2-xTB − member")
        print(f"{'Δ Å':>7} {'max eV/Å':>9} {'rms':>6} {'σ meV':>6}  bonds between heavy atoms of the start, Å")
        shown = sorted(set(list(range(0, len(keep), max(1, len(keep) // args.rows))) + [len(keep) - 1]))
        for n in shown:
            x = prof.positions[keep[n]]
            fg = _predict(lab, prof.numbers, x)[1]
            fm = _predict(calc, prof.numbers, x)[1]
            d = fg - fm
            u = (x[j] - x[i]) / np.linalg.norm(x[j] - x[i])
            d[i] -= np.dot(d[i], u) * u
            d[j] -= np.dot(d[j], u) * u
            cc = bond_lengths(prof.numbers, x, reference_bonds=chain)
            print(f"{ext[keep[n]]:>7.4f} {np.abs(d).max():>9.3f} {np.sqrt((d ** 2).mean()):>6.3f} "
                  f"{1000 * sigma[n]:>6.1f}  " + " ".join(f"{c:.2f}" for c in cc), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
