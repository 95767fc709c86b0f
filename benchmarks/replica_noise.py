"""How noisy is one SMD replica's E_a, and does sharing the reference's seeds help?

Reads the SMD replicas of a finished campaign (reference and one iteration) and prints:
per-replica E_a, the scatter (standard deviation) of each side, the standard error of
ΔE_a unpaired (sqrt(se_nnp² + se_ref²), what the workflow reports) and paired (replica r
of the potential against replica r of the reference: same seed), their correlation, and
how many replicas a side a combined standard error of 0.5 kcal/mol needs at that scatter.

    python benchmarks/replica_noise.py --workdir /tmp/default --iteration 3

More replicas: raise ``reference.replicas`` and ask Snakemake for the extra replica files
(``results/reference/smd/replica_NN.h5`` and ``results/iter_NNN/smd/replica_NN.h5``).
Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from rarelearn.chem.barrier import read_replica
from rarelearn.dataset import read_frames
from rarelearn.units import KCAL_MOL_PER_EV


def replica_eas(smd_dir: Path) -> dict[str, float]:
    out = {}
    for p in sorted(smd_dir.glob("replica_*.h5")):
        fr = read_frames(p)
        ea = read_replica(fr)["ea"] if len(fr) else float("nan")
        if np.isfinite(ea):                      # read up to the break; unbroken replicas have none
            out[p.stem] = ea
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--iteration", type=int, required=True)
    ap.add_argument("--target-kcal", type=float, default=0.5)
    args = ap.parse_args(argv)
    k = KCAL_MOL_PER_EV
    ref = replica_eas(args.workdir / "results" / "reference" / "smd")
    nnp = replica_eas(args.workdir / "results" / f"iter_{args.iteration:03d}" / "smd")
    for name, d in (("reference", ref), (f"iteration {args.iteration}", nnp)):
        v = np.array(list(d.values()))
        print(f"{name}: {len(v)} replicas, E_a mean {v.mean():.3f} eV, scatter (std) {v.std(ddof=1):.3f} eV "
              f"= {v.std(ddof=1) * k:.2f} kcal/mol")
    r, n = np.array(list(ref.values())), np.array(list(nnp.values()))
    unpaired = math.sqrt(n.var(ddof=1) / n.size + r.var(ddof=1) / r.size)
    print(f"ΔE_a = {(n.mean() - r.mean()) * k:.2f} kcal/mol, unpaired SE {unpaired * k:.2f} kcal/mol")
    common = sorted(set(ref) & set(nnp))
    if len(common) >= 3:
        a = np.array([nnp[c] for c in common])
        b = np.array([ref[c] for c in common])
        d = a - b
        print(f"paired over {len(common)} shared seeds: ΔE_a = {d.mean() * k:.2f} kcal/mol, SE "
              f"{d.std(ddof=1) / math.sqrt(d.size) * k:.2f} kcal/mol (unpaired on the same replicas "
              f"{math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size) * k:.2f}); "
              f"correlation of E_a between seed twins {np.corrcoef(a, b)[0, 1]:+.2f}")
    s2 = n.var(ddof=1) + r.var(ddof=1)
    need = math.ceil(s2 * k * k / args.target_kcal ** 2)
    print(f"replicas a side for a combined SE <= {args.target_kcal} kcal/mol at these scatters: {need}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
