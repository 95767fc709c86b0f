"""Where the COGEF error of a campaign comes from: the intact chain's energy, or the point
where the chain gives way. Reads the member profiles a campaign run with
``evaluation.cogef_members: all`` wrote (``results/iter_NNN/cogef/member_K.json``); computes
nothing.

    python benchmarks/intact_branch.py --campaign /tmp/dg --iterations 4 5 6

Prints, per iteration and member (``*`` the best member), against the reference's profile
(kcal/mol): ΔE_max; the energy difference at fixed extensions Δ on both intact branches
(``-`` where either has broken); the member's break extension (Å, the reference's in the
header); ``intact`` and ``shift``, the evaluation's ``cogef_intact_delta_kcal`` (at the
last reference image where both chains hold) and ``cogef_break_shift`` (Å); and, per
iteration, the SMD ΔE_a ± SE (read up to the break) from ``evaluation.json``. The last line:
over all members printed, how well ΔE_max ≈ intact + F_max(reference) × shift. Near the
end of the intact branch the reference's energy rises ~105 kcal/mol per Å, so a member that
breaks 0.01 Å later reads ~1 kcal/mol higher in E_max whatever its energies along the way.
Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rarelearn.learning.evaluation import cogef_comparison
from rarelearn.units import KCAL_MOL_PER_EV

EXTENSIONS = (1.5, 1.8, 1.9, 1.95)


def _intact(profile: dict) -> tuple[np.ndarray, np.ndarray]:
    keep = np.asarray(profile["intact"], dtype=float) > 0.5
    return np.asarray(profile["extension"])[keep], np.asarray(profile["energy"])[keep]


def _at(x: np.ndarray, e: np.ndarray, where: float) -> float:
    """Energy at extension ``where`` on an intact branch, NaN past its last intact image."""
    return float(np.interp(where, x, e)) if len(x) and x[0] <= where <= x[-1] else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--campaign", required=True, type=Path, help="a campaign's work directory")
    p.add_argument("--iterations", type=int, nargs="+", required=True)
    args = p.parse_args(argv)
    res = args.campaign / "results"
    ref = json.loads((res / "reference" / "cogef.json").read_text())
    rx, re_ = _intact(ref)
    print(f"reference: E_max {ref['e_max']:.4f} eV at Δ {ref['extension_at_max']:.3f} Å, breaks at "
          f"{ref['break_extension']:.3f} Å")
    cols = " ".join(f"{'dE@' + format(x, '.2f'):>8}" for x in EXTENSIONS)
    print(f"{'iter':>4} {'member':>6} {'dEmax':>7} {cols} {'break Å':>8} {'intact':>7} {'shift':>7}   "
          "SMD dEa (kcal/mol)")
    split = []
    for it in args.iterations:
        d = res / f"iter_{it:03d}"
        files = sorted((d / "cogef").glob("member_*.json"), key=lambda f: int(f.stem.split("_")[1]))
        if not files:
            print(f"{it:>4} no member profiles (evaluation.cogef_members: all)")
            continue
        best = json.loads((d / "best.json").read_text())["best_member"]
        smd = "-"
        if (d / "evaluation.json").exists():
            ev = json.loads((d / "evaluation.json").read_text())
            if ev.get("delta_ea") is not None:
                smd = (f"{ev['delta_ea'] * KCAL_MOL_PER_EV:+.1f} ± {ev['delta_ea_stderr_kcal']:.1f} "
                       f"({ev['nnp_n_replicas']} pulls)")
        for f in files:
            k = int(f.stem.split("_")[1])
            prof = json.loads(f.read_text())
            x, e = _intact(prof)
            diffs = [(_at(x, e, w) - _at(rx, re_, w)) * KCAL_MOL_PER_EV for w in EXTENSIONS]
            cells = " ".join(f"{v:>+8.1f}" if np.isfinite(v) else f"{'-':>8}" for v in diffs)
            brk = f"{prof['break_extension']:.3f}" if prof.get("broke") else "none"
            name = f"{k}{'*' if k == best else ''}"
            cmp = cogef_comparison(prof, ref)
            d_max = (prof["e_max"] - ref["e_max"]) * KCAL_MOL_PER_EV
            if np.isfinite(cmp["cogef_break_shift"]):
                split.append((d_max, cmp["cogef_intact_delta_kcal"]
                              + ref["f_max"] * cmp["cogef_break_shift"] * KCAL_MOL_PER_EV))
            print(f"{it:>4} {name:>6} {d_max:>+7.1f} {cells} {brk:>8} {cmp['cogef_intact_delta_kcal']:>+7.1f} "
                  f"{cmp['cogef_break_shift']:>+7.3f}   {smd if k == best else ''}")
    if split:
        a = np.asarray(split)
        print(f"ΔE_max against intact + F_max x shift (F_max {ref['f_max'] * KCAL_MOL_PER_EV:.0f} kcal/mol/Å), "
              f"{len(a)} members: RMS residual {np.sqrt(np.mean((a[:, 0] - a[:, 1]) ** 2)):.2f} kcal/mol "
              f"(RMS ΔE_max {np.sqrt(np.mean(a[:, 0] ** 2)):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
