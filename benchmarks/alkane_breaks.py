"""How each n-alkane's COGEF path breaks under the labeller (issue 20): is its "maximum" the
top of an energy barrier, or the energy where a bond crosses the break length on a curve
that still rises?

The COGEF scan ends the intact branch at the first image with a bond past 2x its covalent
radii (3.04 A for C-C) or one that dropped below the branch (``rarelearn.md.cogef``). For
hexane under GFN2-xTB the chain snaps: the terminal bond goes from 1.92 to 3.27 A within one
step and the energy falls, so E_max is a maximum. This prints, per molecule, where the force
peaks (the chain gives way: the pulled bond passes its inflection), the energy there, where
and how the intact branch ended, and how much energy lies between the two: for a chain that
snaps, ~0; for one whose bond lets go gradually, the work done on a bond already past its
inflection, read as part of E_max.

    snakemake --cores 1 --configfile config/config.yaml config/branch.yaml alk.yaml -- \\
        $(for n in $(seq 2 11); do echo results/reference/molecules/C$n/cogef.json; done)
    python benchmarks/alkane_breaks.py --reference results/reference/molecules/C*

(alk.yaml: a ``molecules:`` list of the alkanes, one with weight > 0.) Reads each folder's
cogef.json and cogef.h5; runs nothing. Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rarelearn.chem.breaks import find_break
from rarelearn.chem.geometry import DEFAULT_BOND_SCALE, covalent_bonds
from rarelearn.dataset import read_frames

KCAL = 23.0605   # kcal/mol per eV


def _longest_bond(frames, k: int, start) -> tuple[float, tuple[int, int]]:
    """The C-C bond of the start structure stretched most in image ``k`` (length, atoms)."""
    z = frames.numbers
    pairs = covalent_bonds(z, start, DEFAULT_BOND_SCALE)
    cc = pairs[(z[pairs[:, 0]] == 6) & (z[pairs[:, 1]] == 6)]
    d = np.linalg.norm(frames.positions[k, cc[:, 0]] - frames.positions[k, cc[:, 1]], axis=-1)
    m = int(np.argmax(d))
    return float(d[m]), (int(cc[m, 0]), int(cc[m, 1]))


def describe(ref_dir: Path) -> dict:
    summary = json.loads((ref_dir / "cogef.json").read_text())
    frames = read_frames(ref_dir / "cogef.h5")
    ext = np.asarray(frames.extras["extension"], float)
    intact = np.asarray(frames.extras["intact"]) > 0
    energy = frames.energy - summary["e0"]
    start = frames.positions[int(np.argmin(ext))]
    order = np.argsort(ext)
    ki = order[intact[order]]                      # intact images by extension
    x_f = summary["extension_at_f_max"]
    e_at_f = float(np.interp(x_f, ext[ki], energy[ki]))
    k_f = int(ki[np.argmin(np.abs(ext[ki] - x_f))])
    k_max = int(ki[np.argmax(energy[ki])])
    k_last = int(ki[-1])
    broken = order[~intact[order] & (ext[order] > ext[k_last])]
    k_next = int(broken[0]) if broken.size else None
    bond_f, _ = _longest_bond(frames, k_f, start)
    bond_last, pair = _longest_bond(frames, k_last, start)
    # The slope of E where the branch ends: the last two intact images.
    slope = float((energy[ki[-1]] - energy[ki[-2]]) / (ext[ki[-1]] - ext[ki[-2]])) if len(ki) > 1 else float("nan")
    if k_next is None:
        how, step = "no break in the scan", float("nan")
    else:
        step = float(energy[k_next] - energy[k_last])
        brk = find_break(frames.numbers, frames.positions[[k_last, k_next]], start)
        how = (f"drop {step * KCAL:+.1f} kcal/mol" if step < 0 else
               f"bond past its break length, E still rising ({step * KCAL:+.1f})") if brk.index is not None or step < 0 \
            else f"energy drop {step * KCAL:+.1f}"
    return {"name": ref_dir.name, "atoms": len(frames.numbers), "f_max": summary["f_max"], "x_f": x_f,
            "e_at_f_kcal": e_at_f * KCAL, "bond_at_f": bond_f, "x_max": float(ext[k_max]),
            "e_max_kcal": summary["e_max"] * KCAL, "bond_last": bond_last, "pair": pair,
            "tail_kcal": (summary["e_max"] - e_at_f) * KCAL, "slope_end": slope, "how": how,
            "post_break_rise_kcal": summary.get("post_break_rise", float("nan")) * KCAL}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, nargs="+", required=True,
                   help="reference folders (cogef.json, cogef.h5), e.g. results/reference/molecules/C*")
    args = p.parse_args(argv)
    rows = [describe(d) for d in args.reference if (d / "cogef.json").exists()]
    rows.sort(key=lambda r: (r["atoms"], r["name"]))
    print(f"{'mol':>4} {'F_max':>6} {'at Δ':>6} {'E there':>8} {'bond':>5}   {'E_max':>7} {'at Δ':>6} {'bond':>5} "
          f"{'E_max-E(F_max)':>15} {'dE/dΔ end':>10}  how the intact branch ended")
    print(f"{'':>4} {'eV/Å':>6} {'Å':>6} {'kcal':>8} {'Å':>5}   {'kcal':>7} {'Å':>6} {'Å':>5} {'kcal/mol':>15} {'eV/Å':>10}")
    for r in rows:
        print(f"{r['name']:>4} {r['f_max']:>6.2f} {r['x_f']:>6.3f} {r['e_at_f_kcal']:>8.1f} {r['bond_at_f']:>5.2f}   "
              f"{r['e_max_kcal']:>7.1f} {r['x_max']:>6.3f} {r['bond_last']:>5.2f} {r['tail_kcal']:>15.1f} "
              f"{r['slope_end']:>10.2f}  {r['how']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
