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

from rarelearn.chem.geometry import bond_lengths, bonds_of_elements
from rarelearn.dataset import read_frames
from rarelearn.md.cogef import energy_at_f_max
from rarelearn.units import KCAL_MOL_PER_EV


def _longest_bond(frames, k: int, start) -> float:
    """The length of the C-C bond of the start structure stretched most in image ``k`` (Å)."""
    cc = bonds_of_elements(frames.numbers, start, ("C", "C"))
    return float(bond_lengths(frames.numbers, frames.positions[k], reference_bonds=cc).max())


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
    e_at_f = energy_at_f_max(ext, energy, intact, x_f)
    k_last = int(ki[-1])
    # The slope of E where the branch ends: the last two intact images.
    slope = float((energy[ki[-1]] - energy[ki[-2]]) / (ext[ki[-1]] - ext[ki[-2]])) if len(ki) > 1 else float("nan")
    # The first image past the branch is not intact because a bond passed its break length or
    # because its energy dropped (md.cogef): the energy step tells which.
    broken = order[~intact[order] & (ext[order] > ext[k_last])]
    if not broken.size:
        how = "no break in the scan"
    else:
        step = float(energy[broken[0]] - energy[k_last]) * KCAL_MOL_PER_EV
        how = f"drop {step:+.1f} kcal/mol" if step < 0 else f"bond past its break length, E still rising ({step:+.1f})"
    return {"name": ref_dir.name, "atoms": len(frames.numbers), "f_max": summary["f_max"], "x_f": x_f,
            "e_at_f_kcal": e_at_f * KCAL_MOL_PER_EV,
            "bond_at_f": _longest_bond(frames, int(ki[np.argmin(np.abs(ext[ki] - x_f))]), start),
            "x_max": summary["extension_at_max"], "e_max_kcal": summary["e_max"] * KCAL_MOL_PER_EV,
            "bond_last": _longest_bond(frames, k_last, start),
            "tail_kcal": (summary["e_max"] - e_at_f) * KCAL_MOL_PER_EV, "slope_end": slope, "how": how}


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
