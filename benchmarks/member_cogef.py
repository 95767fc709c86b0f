"""Every member's COGEF profile of a finished campaign's iterations, and the committee
mean's: how far the members of one committee part on the stretched bond. A campaign run
with ``evaluation.cogef_members: all`` has these in ``evaluation.json`` already; this is for
campaigns run without it, or to add the committee mean.

    python benchmarks/member_cogef.py --campaign /tmp/d --iterations 1 2 3

Prints, per iteration and member (``*`` the best member, ``mean`` the committee mean), the
COGEF ΔE_max against the reference's (kcal/mol; ``no break`` when the member holds the bond
to the end of the scan) and the extension at the break. Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rarelearn.chem.molecules import load_prepared_molecule
from rarelearn.config import campaign_config
from rarelearn.md.cogef import cogef_profile, cogef_settings
from rarelearn.models.files import load_model, make_calculator
from rarelearn.units import KCAL_MOL_PER_EV


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--campaign", required=True, type=Path, help="a campaign's work directory")
    p.add_argument("--iterations", type=int, nargs="+", required=True)
    p.add_argument("--no-mean", action="store_true", help="skip the committee mean's profile")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    res = args.campaign / "results"
    c = campaign_config()["cogef"]
    ref = json.loads((res / "reference" / "cogef.json").read_text())
    atoms, g1, g2 = load_prepared_molecule(res / "reference" / "molecule.xyz")
    print(f"reference: E_max {ref['e_max']:.4f} eV, breaks at {ref['break_extension']:.3f} Å")
    print(f"{'iter':>4} {'member':>7} {'dEmax kcal/mol':>15} {'break Å':>8} {'s':>5}")
    for it in args.iterations:
        d = res / f"iter_{it:03d}"
        ens = load_model(d / "ensemble.pt")
        best = json.loads((d / "best.json").read_text())["best_member"]
        for m in list(range(ens.n_members)) + ([] if args.no_mean else [None]):
            t0 = time.time()
            prof = cogef_profile(atoms.copy(), make_calculator(ens, member=m), (g1[0], g2[0]), **cogef_settings(c))
            name = "mean" if m is None else f"{m}{'*' if m == best else ''}"
            if prof.broke:
                print(f"{it:>4} {name:>7} {(prof.e_max - ref['e_max']) * KCAL_MOL_PER_EV:>+15.2f} "
                      f"{prof.break_extension:>8.3f} {time.time() - t0:>5.0f}", flush=True)
            else:
                print(f"{it:>4} {name:>7} {'no break':>15} {'-':>8} {time.time() - t0:>5.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
