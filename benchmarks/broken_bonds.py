"""Which bond the SMD pulls break, per iteration of finished campaigns, against the reference's
(`smd_same_bond_fraction` of the evaluation, recomputed from the replica files so that it
also reads campaigns evaluated before it existed): per iteration the bonds the potential's
pulls broke, the share at the reference's place along the load path, and E_a per side.

    python benchmarks/broken_bonds.py --campaign /tmp/d /tmp/cs

Run on demand; not a test.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rarelearn.chem.barrier import barrier_of_files
from rarelearn.learning.evaluation import smd_bond_comparison
from rarelearn.steps.evaluate import _same_place
from rarelearn.units import KCAL_MOL_PER_EV


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--campaign", nargs="+", type=Path, required=True, help="campaign work directories")
    args = p.parse_args(argv)
    print(f"{'campaign':<28} {'iter':>4} {'same':>5} {'E_a':>7} {'ref E_a':>7}  potential's bonds (reference's)")
    for wd in args.campaign:
        res = wd / "results"
        same = _same_place(res / "reference" / "molecule.xyz")
        ref = barrier_of_files(sorted((res / "reference" / "smd").glob("replica_*.h5")))
        for it in sorted(res.glob("iter_*")):
            files = sorted((it / "smd").glob("replica_*.h5"))
            if not files:
                continue
            nnp = barrier_of_files(files, allow_empty=True)
            c = smd_bond_comparison(nnp["replica_records"], ref["replica_records"], same)
            print(f"{str(wd):<28} {int(it.name[5:]):>4} {c['smd_same_bond_fraction']:>5.2f} "
                  f"{nnp['ea_mean'] * KCAL_MOL_PER_EV:>7.1f} {ref['ea_mean'] * KCAL_MOL_PER_EV:>7.1f}  "
                  f"{c['nnp_smd_bonds']} ({c['ref_smd_bonds']})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
