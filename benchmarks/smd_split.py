"""ΔE_a of a campaign's iterations split where the bond snaps: the work that stretched the chain
up to the snap's start (the last frame in which the bond that broke was still a bond) and the
work during the snap, potential against reference, from the SMD replica files themselves
(campaigns whose barrier.json predates the split included).

    python benchmarks/smd_split.py --reference RUN/results/reference/smd \\
        --iterations RUN/results/iter_00[2-6] [OTHER/results/iter_003 ...]

--reference: the folder of the reference's replica_*.h5; --iterations: iteration folders
(their smd/replica_*.h5). Prints per iteration the replicas with a barrier, ΔE_a ± SE, the
split (kcal/mol) and the mean largest pull force (eV/Å). Run on demand; not a test.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rarelearn.chem.barrier import barrier_of_files, delta_record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, type=Path)
    p.add_argument("--iterations", required=True, type=Path, nargs="+")
    args = p.parse_args(argv)
    ref = barrier_of_files(sorted(args.reference.glob("replica_*.h5")))
    print(f"reference: {ref['n_replicas']} replicas, E_a {ref['ea_mean']:.4f} eV, of it {ref['work_in_snap_mean']:.3f} "
          f"eV during the snap; largest pull force {ref['peak_force_mean']:.2f} eV/Å")
    print(f"{'iteration':>40} {'n':>3} {'dE_a':>7} {'± SE':>5} {'stretch':>8} {'snap':>7} {'F max':>6}")
    for it in args.iterations:
        nnp = barrier_of_files(sorted((it / "smd").glob("replica_*.h5")), allow_empty=True)
        d = delta_record(nnp, ref)
        print(f"{str(it)[-40:]:>40} {nnp['n_replicas']:>3} {d['delta_ea_kcal']:>+7.2f} {d['delta_ea_stderr_kcal']:>5.2f} "
              f"{d['work_to_snap_delta_kcal']:>+8.2f} {d['work_in_snap_delta_kcal']:>+7.2f} "
              f"{nnp['peak_force_mean']:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
