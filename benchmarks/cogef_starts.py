"""The best member's COGEF path from thermal starting geometries (issue 21's optional item).

Each start is a frame of the campaign's reference MD set (evenly spaced, the first and last
left out), relaxed by the member and then scanned exactly as the iteration's own COGEF job
scans the prepared molecule (same pulled atoms, the config's default scan: 0.1 Å steps,
4 Å, fmax 0.01 eV/Å). Prints, per start, the relaxed start (d0, e0), E_max against the
reference's, where and which bond breaks, and the committee's energy spread along the path.
With ``--reference`` the labeller (GFN2-xTB) scans from the same starts instead; with
``--plain`` the scan does not check that its images are minima (``cogef.stable_branch:
false``), and can climb a saddle (see docs/method.md, "COGEF: the stable branch").

    python benchmarks/cogef_starts.py --campaign /tmp/d --iteration 2 --starts 4

Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rarelearn.chem.molecules import load_prepared_molecule
from rarelearn.dataset import read_frames
from rarelearn.learning.uq import member_energies
from rarelearn.md.cogef import cogef_profile
from rarelearn.models.files import load_model, make_calculator
from rarelearn.units import KCAL_MOL_PER_EV


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaign", required=True, type=Path, help="a finished campaign's working directory")
    ap.add_argument("--iteration", required=True, type=int)
    ap.add_argument("--starts", type=int, default=4, help="MD frames to start from")
    ap.add_argument("--plain", action="store_true",
                    help="the plain scan (cogef.stable_branch false), which can stay on a saddle")
    ap.add_argument("--reference", action="store_true",
                    help="scan with the campaign's labeller (GFN2-xTB) instead of the best member")
    args = ap.parse_args(argv)

    res = args.campaign / "results"
    it = res / f"iter_{args.iteration:03d}"
    atoms, g1, g2 = load_prepared_molecule(res / "reference" / "molecule.xyz")
    ref = json.loads((res / "reference" / "cogef.json").read_text())
    best = int(json.loads((it / "best.json").read_text())["best_member"])
    ens = load_model(it / "ensemble.pt")
    if args.reference:
        from rarelearn.chem.labellers import make_labeller

        labeller = make_labeller("gfn2-xtb", {})

        def calculator():
            return labeller.calculator()
    else:
        def calculator():
            return make_calculator(ens, member=best)
    md = read_frames(res / "reference" / "md.h5")
    idx = np.linspace(0, len(md) - 1, args.starts + 2).astype(int)[1:-1]
    pull = (g1[0], g2[0])
    driver = "GFN2-xTB" if args.reference else f"best member {best}"
    print(f"{args.campaign}, iteration {args.iteration}, {driver}; reference's own scan: E_max {ref['e_max']:.3f} eV "
          f"at Δ {ref['extension_at_max']:.2f} Å, {ref['broken_label']}")
    print(f"{'stable-branch' if not args.plain else 'plain'} scan")
    print(f"{'start':<18}{'d0 Å':>8}{'e0 eV':>11}{'E_max eV':>10}{'ΔE_max kcal/mol':>17}{'at Δ Å':>8}"
          f"{'bond':>10}{'images':>8}{'σ max meV':>11}{'s':>5}")
    for k in [-1, *idx]:
        a = atoms.copy()
        if k >= 0:
            a.positions = md.positions[k]
        t0 = time.time()
        prof = cogef_profile(a, calculator(), pull, step=0.1, max_extension=4.0,
                             post_break_extension=1.0, fmax=0.01, stable_branch=not args.plain)
        s = prof.summary()
        sig = member_energies(ens, prof.frames).std(axis=0)
        d_e = (s["e_max"] - ref["e_max"]) * KCAL_MOL_PER_EV if s["broke"] else float("nan")
        name = "prepared molecule" if k < 0 else f"MD frame {k}"
        print(f"{name:<18}{s['d0']:>8.3f}{s['e0']:>11.3f}{s['e_max']:>10.3f}{d_e:>+17.1f}"
              f"{s['extension_at_max']:>8.2f}{str(s.get('broken_label')):>10}{len(prof.frames):>8}"
              f"{1000 * sig.max():>11.0f}{time.time() - t0:>5.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
