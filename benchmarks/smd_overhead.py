"""Cost of the LAMMPS steered-MD engine next to the bare calculator.

1. Runs an SMD of hexane with tblite GFN2-xTB through ``rarelearn.md.dynamics.run_smd``
   (``--steps`` pull steps, a few relax steps) and times it per step.
2. Replays exactly the recorded positions, in order, through a fresh GFN2-xTB
   calculator (energy + forces per call, same SCF restarts as in MD) and times it.
3. Runs the same SMD with a trivial numpy calculator (harmonic bonds) to show the
   engine's own per-step cost (LAMMPS + callback + checks + recording).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/smd_overhead.py [--steps 300] [--repeat 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from rarelearn.md.dynamics import SMDProtocol, run_smd


class HarmonicBonds(Calculator):
    """Cheap stand-in potential: harmonic springs on the starting bonds (eV, Å)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, pairs, r0, k=20.0):
        super().__init__()
        self.pairs, self.r0, self.k = pairs, r0, k

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        x = self.atoms.positions
        d = x[self.pairs[:, 1]] - x[self.pairs[:, 0]]
        r = np.linalg.norm(d, axis=1)
        g = (self.k * (r - self.r0) / r)[:, None] * d
        f = np.zeros_like(x)
        np.add.at(f, self.pairs[:, 0], g)
        np.add.at(f, self.pairs[:, 1], -g)
        self.results = {"energy": float(0.5 * self.k * ((r - self.r0) ** 2).sum()), "forces": f}


def timed(calc):
    """Wrap ``calc.calculate`` to accumulate the time spent inside the calculator."""
    calc.seconds = 0.0
    calc.ncalls = 0
    inner = calc.calculate

    def calculate(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            calc.seconds += time.perf_counter() - t0
            calc.ncalls += 1

    calc.calculate = calculate
    return calc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300, help="pull steps per SMD")
    ap.add_argument("--relax", type=int, default=20, help="relax steps before the pull")
    ap.add_argument("--repeat", type=int, default=2, help="repetitions (best is reported)")
    args = ap.parse_args()

    from tblite.ase import TBLite

    from rarelearn.chem.geometry import covalent_bonds
    from rarelearn.chem.molecules import build_alkane

    atoms = build_alkane(6, fmax=0.05, steps=200)  # GFN2-xTB-relaxed; carbons are atoms 0..5
    atoms = Atoms(atoms.numbers, atoms.positions)
    n_steps = args.relax + args.steps
    proto = SMDProtocol(relax_steps=args.relax, pull_steps=args.steps, velocity=1.0, record_every=1)

    smd_per_step, bare_per_call, engine_per_step, inside = [], [], [], []
    for rep in range(args.repeat):
        calc = timed(TBLite(method="GFN2-xTB", verbosity=0))
        t0 = time.perf_counter()
        fr = run_smd(atoms, calc, [0], [5], proto, seed=rep)
        t_smd = time.perf_counter() - t0
        calls = fr.attrs["calculator_calls"]
        smd_per_step.append(t_smd / n_steps)
        inside.append((t_smd - calc.seconds) / n_steps)

        # replay the pull frames in order through a fresh calculator (bare cost per call)
        replay = TBLite(method="GFN2-xTB", verbosity=0)
        a = atoms.copy()
        a.calc = replay
        t0 = time.perf_counter()
        for pos in fr.positions:
            a.positions = pos
            a.get_potential_energy()
            a.get_forces()
        bare_per_call.append((time.perf_counter() - t0) / len(fr))

        pairs = covalent_bonds(atoms.numbers, atoms.positions)
        r0 = np.linalg.norm(atoms.positions[pairs[:, 1]] - atoms.positions[pairs[:, 0]], axis=1)
        t0 = time.perf_counter()
        fh = run_smd(atoms, HarmonicBonds(pairs, r0), [0], [5], proto, seed=rep)
        engine_per_step.append((time.perf_counter() - t0) / (fh.attrs["relax_steps_done"] + fh.attrs["steps_done"]))
        print(f"rep {rep}: SMD {t_smd:.2f} s for {n_steps} steps ({calls} calculator calls, "
              f"stop: {fr.attrs['stop_reason']}), {calc.seconds / calc.ncalls * 1e3:.2f} ms/call inside it; "
              f"replay {bare_per_call[-1] * 1e3:.2f} ms/call")

    smd, bare, eng, outside = min(smd_per_step), min(bare_per_call), min(engine_per_step), min(inside)
    print(f"hexane C6H14, GFN2-xTB (tblite), {n_steps} steps ({args.relax} relax + {args.steps} pull), best of {args.repeat}")
    print(f"bare calculator (energy+forces):  {bare * 1e3:7.3f} ms/call")
    print(f"LAMMPS SMD with that calculator:  {smd * 1e3:7.3f} ms/step  (incl. LAMMPS setup)")
    print(f"overhead:                         {100 * (smd - bare) / bare:6.1f} %")
    print(f"time outside the calculator:      {outside * 1e3:7.3f} ms/step  ({100 * outside / bare:.1f} % of a call)")
    print(f"engine alone (harmonic stand-in): {eng * 1e3:7.3f} ms/step")


if __name__ == "__main__":
    main()
