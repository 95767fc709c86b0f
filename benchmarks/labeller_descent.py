"""The labeller's way down from a potential's last intact COGEF image, labelled: training
frames of where a long chain gives way (issue 20, a hand round).

A potential can be right on its own COGEF path, energies and forces, and still hold the chain
intact too long: where the chain gives way is decided by a curvature (``rarelearn.learning.
soft_modes``). The campaign's descent sampler (``sampler.descent_steps``) starts the labeller
from images displaced along the *potential's* softest constrained mode; this starts it from the
potential's last intact image displaced 0.1 Å (largest Cartesian component) both ways along the
*labeller's* softest constrained mode (``rarelearn.md.hessian.lowest_constrained_mode``, 6N
labeller calls), then relaxes ``--steps`` BFGS steps (largest step 0.1 Å) under the pulled
distance's constraint, every structure kept; all are labelled and written to DEST/MOLECULE.h5.

    python benchmarks/held_out.py --cogef-only --committee DIR --config config/branch.yaml \
        --reference REFS/C6 ... --out OUT
    python benchmarks/labeller_descent.py --scans OUT --dest /tmp/desc --molecules C6 C7 C8 C9 C10 C11

``--scans``: a ``held_out.py --out`` folder (MOLECULE/cogef.json and cogef.h5, the potential's
scan). Prints per molecule the labeller's softest eigenvalue at the image, the frames labelled,
the range of the longest C–C bond over them and their energy span. Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rarelearn.chem.labellers import make_labeller
from rarelearn.chem.geometry import bond_lengths, bonds_of_elements
from rarelearn.config import campaign_config
from rarelearn.dataset import Frames, read_frames, write_frames
from rarelearn.md.hessian import lowest_constrained_mode
from rarelearn.units import KCAL_MOL_PER_EV


def descent(scan: Frames, pull: tuple[int, int], lab, steps: int, amplitude: float) -> tuple[Frames, float, float]:
    """The labelled frames from the scan's last intact image, the image's extension and the
    labeller's softest constrained eigenvalue there (eV/Å²)."""
    from ase import Atoms
    from ase.constraints import FixBondLength
    from ase.optimize import BFGS

    ext = scan.extras["extension"]
    intact = np.flatnonzero(np.asarray(scan.extras["intact"]) > 0.5)
    q = int(intact[np.argmax(ext[intact])])
    i, j = pull
    calc = lab.calculator()
    start = Atoms(numbers=scan.numbers, positions=scan.positions[q])
    start.set_constraint(FixBondLength(i, j))
    eigenvalue, mode = lowest_constrained_mode(start, calc, pull)
    mode = np.asarray(mode).reshape(-1, 3)
    mode = mode / np.abs(mode).max()
    positions = [start.positions.copy()]
    for sign in (1.0, -1.0):
        a = start.copy()
        a.set_constraint(FixBondLength(i, j))
        a.positions += sign * amplitude * mode
        a.calc = calc
        opt = BFGS(a, logfile=None, maxstep=0.1)
        opt.attach(lambda a=a: positions.append(a.positions.copy()), interval=1)
        opt.run(fmax=0.05, steps=steps)
    frames = Frames(numbers=scan.numbers, positions=np.array(positions), source="cogef-steps")
    return lab.label(frames), float(ext[q]), float(eigenvalue)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scans", required=True, type=Path, help="a held_out.py --out folder")
    p.add_argument("--dest", required=True, type=Path)
    p.add_argument("--molecules", required=True, nargs="+")
    p.add_argument("--steps", type=int, default=12, help="labeller BFGS steps each way")
    p.add_argument("--amplitude", type=float, default=0.1, help="Å along the softest mode")
    args = p.parse_args(argv)
    cfg = campaign_config()
    lab = make_labeller(cfg["labeller"]["name"], cfg["labeller"].get("options") or {})
    args.dest.mkdir(parents=True, exist_ok=True)
    for mol in args.molecules:
        pot = json.loads((args.scans / mol / "cogef.json").read_text())
        scan = read_frames(args.scans / mol / "cogef.h5")
        frames, at, eigenvalue = descent(scan, tuple(pot["pull"]), lab, args.steps, args.amplitude)
        ok = frames.subset(np.flatnonzero(frames.ok))
        write_frames(args.dest / f"{mol}.h5", ok)
        longest = bond_lengths(ok.numbers, ok.positions,   # the relaxed molecule's C–C bonds
                               reference_bonds=bonds_of_elements(scan.numbers, scan.positions[0])).max(axis=1)
        print(f"{mol}: last intact image at Δ {at:.3f} Å, labeller's softest eigenvalue {eigenvalue:+.4f} eV/Å²; "
              f"{len(ok)} of {len(frames)} frames; longest C–C {min(longest):.2f}–{max(longest):.2f} Å; "
              f"energy span {KCAL_MOL_PER_EV * (ok.energy.max() - ok.energy.min()):.1f} kcal/mol", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
