"""Which bond gives way, and where: the labeller's loaded chain with one C–C bond held longer
(issue 20).

Every committee so far placed hexane's break 0.02–0.2 Å off GFN2-xTB's, often on an intact
branch with one bond stretched to 2.0–2.1 Å that GFN2-xTB does not have, or broke an inner
bond where GFN2-xTB breaks a terminal one. Both are questions of how the energy of the loaded
chain changes when the stretch gathers on one bond, which thermal frames along the labeller's
own (symmetric) chain hardly sample. This makes that data directly: at pulled-atom extensions
Δ near the break (reference COGEF images within ``--window`` Å below it, and ``--beyond``
extensions past it), for each C–C bond up to the chain's mirror symmetry, GFN2-xTB relaxes
the chain with the pulled atoms' distance *and* that bond's length held (the bond
``--stretch`` Å longer than on the symmetric chain); each relaxed frame is kept with
``--copies`` noisy copies (the selection's augmentation), all labelled. Then members are
trained from scratch on the MD set + ``dense_break.py``'s thermal frames + these, as
``dense_break.py`` trains them, and their own COGEF is read against the labeller's.

    python benchmarks/bond_stretch.py --campaign /tmp/dense --members        # the frames only
    python benchmarks/bond_stretch.py --campaign /tmp/dense --members 0 1    # and two members
    python benchmarks/bond_stretch.py --campaign /tmp/dense --compare MODEL.pt:0 ...

The frames are made once and kept (``DIR/dense/stretch.h5``; ``dense_break.py``'s frames are
made too where missing); members are saved as ``DIR/dense/models/stretch<n>_local<m>_member<k>.pt``.
``--compare`` prints instead each model's energies of the same held chains against the
labeller's (relative to the bond at its symmetric-chain length). Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rarelearn.chem.breaks import bond_position
from rarelearn.chem.geometry import bonds_of_elements
from rarelearn.chem.labellers import make_labeller
from rarelearn.chem.molecules import load_prepared_molecule
from rarelearn.config import campaign_config
from rarelearn.dataset import Frames, read_frames, write_frames
from rarelearn.learning.selection import augment
from rarelearn.units import KCAL_MOL_PER_EV


def mirror_unique(atoms, pull) -> list[tuple[int, int]]:
    """The C–C bonds of the unstretched molecule, one of each set equal up to its symmetry
    (:func:`rarelearn.chem.breaks.bond_position`), in chain order."""
    seen, out = set(), []
    for i, j in bonds_of_elements(atoms.numbers, atoms.positions, ("C", "C")):
        key = bond_position(atoms.numbers, atoms.positions, pull, (i, j))
        if key not in seen:
            seen.add(key)
            out.append((int(i), int(j)))
    return out


def held_relaxation(atoms, pull, bond, pull_distance, bond_length, calc, fmax, steps):
    """The chain relaxed with the pulled atoms' distance and one bond's length held; returns
    (atoms, converged)."""
    from ase.constraints import FixBondLengths
    from ase.optimize import BFGS

    a = atoms.copy()
    a.calc = calc
    a.set_constraint(FixBondLengths([list(pull), list(bond)], bondlengths=[pull_distance, bond_length]))
    a.set_positions(a.positions)        # the constraint's own update moves the four atoms there
    opt = BFGS(a, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    return a, converged


def scan_setup(res: Path, args):
    """(pull, reference COGEF path, unstretched pull distance, [(image, extension)], bonds, cogef.json)."""
    atoms, g1, g2 = load_prepared_molecule(res / "reference" / "molecule.xyz")
    pull = (g1[0], g2[0])
    ref = json.loads((res / "reference" / "cogef.json").read_text())
    path = read_frames(res / "reference" / "cogef.h5")
    ext, intact = path.extras["extension"], path.extras["intact"] > 0
    b = ref["break_extension"]
    ks = []
    for k in sorted(np.flatnonzero(intact & (ext >= b - args.window)), key=lambda k: -ext[k]):
        if all(abs(ext[k] - ext[q]) >= args.spacing for q in ks):
            ks.append(int(k))
    last = max(ks, key=lambda k: ext[k])
    starts = [(k, float(ext[k])) for k in sorted(ks, key=lambda k: ext[k])]
    starts += [(last, float(b + x)) for x in args.beyond]
    bonds = mirror_unique(atoms, pull)
    return pull, path, float(atoms.get_distance(*pull)), starts, bonds, ref


def held_chains(res: Path, calc, args, stretches):
    """Yields (extension, bond, held length, relaxed atoms, converged) for every start of
    :func:`scan_setup`, bond and stretch, relaxed under ``calc``."""
    pull, path, d0, starts, bonds, _ = scan_setup(res, args)
    for k, x in starts:
        img = path.to_atoms(k)
        for bond in bonds:
            b0 = float(img.get_distance(*bond))
            for st in stretches:
                a, ok = held_relaxation(img, pull, bond, d0 + x, b0 + st, calc, args.fmax, args.steps)
                yield x, bond, b0 + st, a, ok


def stretch_frames(res: Path, out: Path, cfg: dict, args) -> Frames:
    if out.exists():
        return read_frames(out)
    _, _, _, starts, bonds, ref = scan_setup(res, args)
    lab = make_labeller(cfg["labeller"]["name"], cfg["labeller"].get("options") or {})
    kept, rows, t0 = [], {}, time.time()
    print(f"bonds held (one of each mirror pair): {bonds}; extensions {[round(x, 3) for _, x in starts]}")
    for x, bond, length, a, ok in held_chains(res, lab.calculator(), args, args.stretch):
        e = float(a.get_potential_energy())
        f = a.get_forces(apply_constraint=False)
        kept.append(Frames(a.numbers, a.positions[None], np.array([e]), f[None], source="stretch",
                           labeller=lab.name, extras={"extension": np.array([x]),
                                                      "held_bond_length": np.array([length])}))
        rows.setdefault(x, {}).setdefault(bond, []).append(
            f"{(e - ref['e0']) * KCAL_MOL_PER_EV:6.1f}{'' if ok else '!'}")
    for x, row in rows.items():
        print(f"  Δ {x:.3f} Å: E - E0 kcal/mol, per bond (|) and stretch ('!' not converged): "
              + " | ".join(" ".join(cells) for cells in row.values()))
    relaxed = Frames.concatenate(kept)
    copies = lab.label(augment(relaxed, args.copies, args.amplitude, seed=7))
    copies = copies.subset(np.flatnonzero(np.isfinite(copies.energy)))
    frames = Frames.concatenate([relaxed, copies])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_frames(out, frames)
    print(f"{len(relaxed)} relaxed frames + {len(copies)} labelled copies → {out} ({time.time() - t0:.0f} s)")
    return frames


def held_scan(res: Path, calc, args) -> tuple[list, list, np.ndarray]:
    """(extensions, bonds, E[extension, bond, stretch] eV, NaN where unconverged) of the chain
    relaxed under ``calc`` with the pulled atoms' distance and one bond held, the stretches
    ``[0] + args.stretch``."""
    _, _, _, starts, bonds, _ = scan_setup(res, args)
    stretches = [0.0, *args.stretch]
    e = [a.get_potential_energy() if ok else np.nan for *_, a, ok in held_chains(res, calc, args, stretches)]
    return [x for _, x in starts], bonds, np.reshape(e, (len(starts), len(bonds), len(stretches)))


def compare(res: Path, cfg: dict, args) -> None:
    """The localisation energy E(bond held longer by s) − E(s = 0) at each extension, the
    labeller's against each model's (its member 0, or ``path:member``), kcal/mol."""
    from rarelearn.models.files import load_model, make_calculator

    lab = make_labeller(cfg["labeller"]["name"], cfg["labeller"].get("options") or {})
    xs, bonds, e_ref = held_scan(res, lab.calculator(), args)
    loc_ref = (e_ref - e_ref[..., :1]) * KCAL_MOL_PER_EV
    print(f"localisation energy E(s) - E(0), kcal/mol, s = {args.stretch} Å, per bond {bonds}")
    for spec in args.compare:
        path, _, member = spec.partition(":")
        _, _, e_m = held_scan(res, make_calculator(load_model(Path(path)), member=int(member or 0)), args)
        loc_m = (e_m - e_m[..., :1]) * KCAL_MOL_PER_EV
        print(f"{spec}:")
        for n, x in enumerate(xs):
            cells = [" ".join(f"{r:+5.1f}/{m:+5.1f}" for r, m in zip(loc_ref[n, b, 1:], loc_m[n, b, 1:]))
                     for b in range(len(bonds))]
            print(f"  Δ {x:.3f}  labeller/model: " + "  |  ".join(cells), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--campaign", required=True, type=Path, help="a work directory with the reference stage")
    p.add_argument("--members", type=int, nargs="*", default=[0, 1])
    p.add_argument("--dense", type=int, default=800, help="dense_break.py frames also trained on")
    p.add_argument("--window", type=float, default=0.25, help="Å below the reference break")
    p.add_argument("--spacing", type=float, default=0.03, help="least Å between the images used")
    p.add_argument("--beyond", type=float, nargs="*", default=[0.03, 0.07, 0.12],
                   help="extensions past the break, Å (from the last intact image)")
    p.add_argument("--stretch", type=float, nargs="+", default=[0.04, 0.08, 0.12, 0.18, 0.26],
                   help="Å the held bond is longer than on the symmetric chain")
    p.add_argument("--copies", type=int, default=2)
    p.add_argument("--amplitude", type=float, default=0.05, help="Å, the copies' uniform noise")
    p.add_argument("--fmax", type=float, default=0.02)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--schedule", default="epochs=100,lr_patience=3,early_stopping_patience=15,lr=0.0003")
    p.add_argument("--compare", nargs="+", metavar="MODEL[:MEMBER]",
                   help="print the localisation energies of these model files against the labeller's, and stop")
    args = p.parse_args(argv)
    res = args.campaign / "results"
    cfg = campaign_config()
    if args.compare:
        compare(res, cfg, args)
        return 0
    frames = stretch_frames(res, args.campaign / "dense" / "stretch.h5", cfg, args)
    if not args.members:
        return 0
    from dense_break import main as dense_main
    return dense_main(["--campaign", str(args.campaign), "--local", str(args.dense), "--members",
                       *map(str, args.members), "--schedule", args.schedule, "--extra",
                       str(args.campaign / "dense" / "stretch.h5"), "--tag", f"stretch{len(frames)}_"])


if __name__ == "__main__":
    raise SystemExit(main())
