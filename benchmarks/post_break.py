"""The potential's pulls past the break: what the selection keeps of them, and whether the
fragments still attract. Reads a finished campaign's pulls and UQ; labels a few frames.

    python benchmarks/post_break.py --campaign /tmp/dg --iterations 4 5 6 [--forces 6]

Prints, per iteration and replica: the frames at or past the break, how many of them are
above the UQ threshold (and their median σ over the threshold), and how many the similarity
screening keeps walking them together with the intact chain's frames (``joint``, the
paper's text read literally) and on their own (``separate``, the default
``selection.post_break_screening``). With ``--forces N``: for replica 0, N frames evenly
spread from the break to the end, GFN2-xTB (the campaign's labeller) against every member,
the force pulling the two fragments apart (eV/Å; negative: they attract) and the broken
bond's length. Run on demand; not a test.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np

from rarelearn.chem.breaks import find_break
from rarelearn.chem.geometry import fragment_labels
from rarelearn.dataset import read_frames
from rarelearn.learning.selection import screen
from rarelearn.units import EV_PER_KCAL_MOL


def _separation_force(numbers, pos, forces, bond) -> float:
    """Half the difference of the two fragments' total forces along the broken bond's axis
    (positive: apart); the fragments are those of the bond graph
    (:func:`rarelearn.chem.geometry.fragment_labels`). NaN when the bond's atoms are joined."""
    i, j = bond
    _, labels = fragment_labels(numbers, pos)
    if labels[i] == labels[j]:
        return float("nan")
    far = labels == labels[j]
    u = pos[j] - pos[i]
    u /= np.linalg.norm(u)
    return float((forces[far].sum(0) @ u - forces[~far].sum(0) @ u) / 2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--campaign", required=True, type=Path, help="a campaign's work directory")
    p.add_argument("--iterations", type=int, nargs="+", required=True)
    p.add_argument("--forces", type=int, default=0, help="frames of replica 0 to label past the break")
    args = p.parse_args(argv)
    from rarelearn.config import campaign_config
    sel = campaign_config()["selection"]
    gap_d, gap_e = sel["min_distance_gap"], sel["min_energy_gap_kcal"] * EV_PER_KCAL_MOL
    print(f"{'iter':>4} {'replica':>10} {'post':>5} {'above':>6} {'σ/thr':>6} {'joint':>6} {'separate':>8}")
    for it in args.iterations:
        d = args.campaign / "results" / f"iter_{it:03d}"
        with h5py.File(d / "uq.h5", "r") as h5:
            for name in sorted(h5):
                g = h5[name]
                fr = read_frames(d / "smd" / f"{name}.h5")
                s, thr = g["sigma"][()], float(g.attrs["threshold"])
                e = g["energies"][()].mean(axis=0)
                bi = find_break(fr.numbers, fr.positions).index
                if bi is None:
                    print(f"{it:>4} {name:>10} no break")
                    continue
                dist = fr.extras["spring_distance"]
                cand = np.flatnonzero(s > thr)
                joint = screen(cand, dist, e, gap_d, gap_e)
                alone = screen(cand[cand >= bi], dist, e, gap_d, gap_e)
                print(f"{it:>4} {name:>10} {len(fr) - bi:>5} {int((cand >= bi).sum()):>6} "
                      f"{np.median(s[bi:]) / thr:>6.1f} {int((joint >= bi).sum()):>6} {len(alone):>8}")
        if args.forces:
            _forces(d, args.forces)
    return 0


def _forces(d: Path, n: int) -> None:
    from rarelearn.chem.labellers import make_labeller
    from rarelearn.config import campaign_config
    from rarelearn.models.files import load_model
    fr = read_frames(d / "smd" / "replica_00.h5")
    brk = find_break(fr.numbers, fr.positions)
    idx = np.unique(np.linspace(brk.index, len(fr) - 1, n).round().astype(int))
    sub = fr.subset(idx)
    cfg = campaign_config()["labeller"]
    lab = make_labeller(cfg["name"], cfg.get("options")).label(sub)
    ens = load_model(d / "ensemble.pt")
    _, forces = ens.energies_forces(fr.numbers, sub.positions)
    i, j = brk.bond
    print(f"  replica_00 past its break (bond {i}-{j}): force pulling the fragments apart, eV/Å")
    print(f"  {'step':>6} {'bond Å':>7} {'labeller':>9} " + " ".join(f"{'m' + str(k):>7}" for k in range(len(forces))))
    for r, f in enumerate(idx):
        pos = sub.positions[r]
        ref = _separation_force(fr.numbers, pos, lab.forces[r], (i, j))
        mem = [_separation_force(fr.numbers, pos, forces[k, r], (i, j)) for k in range(len(forces))]
        print(f"  {f:>6} {np.linalg.norm(pos[i] - pos[j]):>7.2f} {ref:>+9.3f} " + " ".join(f"{m:>+7.3f}" for m in mem))


if __name__ == "__main__":
    raise SystemExit(main())
