"""How well-conditioned is the COGEF maximum of a chain that snaps (issue 20)?

The goal asks a potential's COGEF maximum within 1 kcal/mol of GFN2-xTB's. A trained
potential carries errors of ~1 kcal/mol per frame (hexane's committees: 30–60 meV on frames
near the break). How much does the COGEF maximum move for an error of that size? This adds
to GFN2-xTB a small, smooth bump on every C–C pair, ε·exp(−(r − r0)²/2w²) (height ε
kcal/mol at bond length r0, width w Å; forces at most ε/w·e^−½), and reruns its COGEF
scan with the campaign's settings: the maximum's shift against ε is the amplification
a potential's error of that shape meets. Beside it, the loaded chain's error where both still
hold (``cogef_intact_delta_kcal``) and the profile's RMS difference up to the earlier break,
as the campaign's evaluation reads them.

    python benchmarks/break_conditioning.py --campaign /tmp/dense --eps 0.5 -0.5 --r0 1.95 2.05 2.2

Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from rarelearn.chem.labellers import make_labeller
from rarelearn.chem.molecules import load_prepared_molecule
from rarelearn.config import campaign_config
from rarelearn.learning.evaluation import cogef_comparison
from rarelearn.md.cogef import cogef_profile, cogef_settings
from rarelearn.units import EV_PER_KCAL_MOL, KCAL_MOL_PER_EV


class CCBump(Calculator):
    """ε·exp(−(r − r0)²/2w²) summed over C–C pairs (ε in eV, r0 and w in Å)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, eps: float, r0: float, w: float, **kw):
        super().__init__(**kw)
        self.eps, self.r0, self.w = eps, r0, w

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        pos = self.atoms.positions
        c = np.flatnonzero(self.atoms.numbers == 6)
        e, f = 0.0, np.zeros_like(pos)
        for n, i in enumerate(c):
            for j in c[n + 1:]:
                d = pos[j] - pos[i]
                r = float(np.linalg.norm(d))
                g = self.eps * np.exp(-((r - self.r0) ** 2) / (2 * self.w ** 2))
                e += g
                de_dr = -g * (r - self.r0) / self.w ** 2
                f[j] -= de_dr * d / r
                f[i] += de_dr * d / r
        self.results = {"energy": e, "forces": f}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--campaign", required=True, type=Path, help="a work directory with the reference stage")
    p.add_argument("--eps", type=float, nargs="+", default=[0.5, -0.5], help="bump heights, kcal/mol")
    p.add_argument("--r0", type=float, nargs="+", default=[1.95, 2.05, 2.2], help="bump centres, Å")
    p.add_argument("--width", type=float, default=0.1, help="Å")
    args = p.parse_args(argv)
    from ase.calculators.mixing import SumCalculator

    res = args.campaign / "results"
    cfg = campaign_config()
    c = cfg["cogef"]
    atoms, g1, g2 = load_prepared_molecule(res / "reference" / "molecule.xyz")
    ref = json.loads((res / "reference" / "cogef.json").read_text())
    lab = make_labeller(cfg["labeller"]["name"], cfg["labeller"].get("options") or {})

    def scan(calc):
        return cogef_profile(atoms, calc, (g1[0], g2[0]), **cogef_settings(c))

    print(f"GFN2-xTB (cogef.json): E_max {ref['e_max'] * KCAL_MOL_PER_EV:.2f} kcal/mol, break at Δ "
          f"{ref['break_extension']:.4f} Å, F_max {ref['f_max']:.2f} eV/Å; bump width {args.width} Å")
    print(f"{'eps kcal':>8} {'r0 A':>5} {'max F meV/A':>11} {'dE_max kcal':>11} {'break A':>8} {'shift A':>8} "
          f"{'dF_max eV/A':>11} {'bond':>8} {'amplification':>13} {'intact kcal':>11} {'RMSE kcal':>9}")
    for r0 in args.r0:
        for eps in args.eps:
            bump = CCBump(eps * EV_PER_KCAL_MOL, r0, args.width)
            prof = scan(SumCalculator([lab.calculator(), bump]))
            d = (prof.e_max - ref["e_max"]) * KCAL_MOL_PER_EV
            cmp = cogef_comparison(prof.summary(), ref)
            fb = 1000 * abs(eps) * EV_PER_KCAL_MOL / args.width * np.exp(-0.5)
            print(f"{eps:>+8.2f} {r0:>5.2f} {fb:>11.0f} {d:>+11.2f} {prof.break_extension:>8.4f} "
                  f"{prof.break_extension - ref['break_extension']:>+8.4f} {prof.f_max - ref['f_max']:>+11.3f} "
                  f"{prof.brk.label if prof.broke else 'none':>8} {d / eps:>13.1f} "
                  f"{cmp['cogef_intact_delta_kcal']:>+11.2f} {cmp['cogef_rmse_to_break_kcal']:>9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
