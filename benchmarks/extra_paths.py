"""One round of other data, measured by retraining (issues 17, 21): does a committee learn
which bond breaks when its data set holds other stretched configurations?

Builds a work directory whose ``results/iter_NNN/merged.h5`` is a campaign's
``iter_{NNN-1}/merged.h5`` plus 150 labelled frames of another source in place of iteration
NNN's own selection, then ``benchmarks/training_schedule.py --cogef`` retrains the members
on it (warm-started from iteration NNN, as iteration NNN+1 would) and prints each member's
COGEF ΔE_max, break, end-of-scan energy and broken bond.

Sources:
* ``--pulls 0-1,1-2,2-3``: the best member's own COGEF scans of these atom pairs (a bond's
  two atoms: that bond stretched alone; farther atoms: a sub-chain under tension), scored by
  the committee's spread and selected, screened, augmented and labelled as the cogef sampler
  does (50 frames + 100 noisy copies);
* ``--labeller-steps N``: the best member's own end-to-end COGEF path (the iteration's
  ``cogef.h5``), 10 images (``--images``) spread over Δ 1.8–2.9 Å (around its maximum and past it), each
  relaxed N BFGS steps under the same constraint by the labeller, every step labelled
  (the way from the potential's branch towards the labeller's), plus 2 noisy copies of each;
* ``--soft-mode``: the best member's own COGEF path (``cogef.h5``), 15 intact images
  (``--images``) over the 0.3 Å of extension up to its maximum, each displaced by ±0.1 and
  ±0.2 Å along its softest constrained mode under the best member
  (:func:`rarelearn.learning.soft_modes.soft_mode_frames`): 75 frames, plus 1 noisy copy of each;
  with ``--soft-mode-steps N``: instead 3 images (``--images``) over the 0.05 Å up to the
  maximum, each displaced +0.1 Å along that mode and relaxed N − 1 BFGS steps by the labeller
  under the path's constraint (the labeller's own way down from the potential's maximum:
  does the chain break there, how far does the energy fall), every step labelled, plus 1
  noisy copy of every fourth frame;
* ``--reference-path``: a diagnostic upper bound, not a sampler: the reference's own COGEF
  images (test data otherwise) and 2 noisy copies of each, labelled.

    python benchmarks/extra_paths.py --campaign /tmp/sb2/cogef_all --iteration 4 --pulls 0-2,0-3,0-4,1-4 --out /tmp/sub
    python benchmarks/training_schedule.py --campaign /tmp/sub --iteration 4 --members 0 1 2 --cogef \\
        --schedule epochs=50,lr_patience=10,early_stopping_patience=20

Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from rarelearn.config import campaign_config
from rarelearn.dataset import read_frames, write_frames
from rarelearn.learning.selection import augment
from rarelearn.steps.label import label_step, merge_step
from rarelearn.steps.sample import cogef_step
from rarelearn.steps.select import select_step


def _each_with_its_way(images, cfg: dict, pull, steps: int):
    """``images``, each followed by the ``steps`` − 1 structures of its relaxation by the
    labeller under the constraint of ``pull`` (the workflow's
    :func:`rarelearn.chem.labelling.labeller_steps`), unlabelled, without extras."""
    import numpy as np

    from rarelearn.chem.labelling import labeller_steps
    from rarelearn.chem.labellers import make_labeller
    from rarelearn.dataset import Frames

    images.extras = {"labeller_steps": np.full(len(images), float(steps))}
    lab = make_labeller(cfg["labeller"]["name"], cfg["labeller"].get("options") or {})
    way = labeller_steps(lab, images, pull)
    way.source[:] = images.source[0] if len(images) else "cogef-steps"
    order = [f for k in range(len(images)) for f in [images.subset([k]), way.subset(slice(k * (steps - 1),
                                                                                          (k + 1) * (steps - 1)))]]
    frames = Frames.concatenate(order)
    frames.extras = {}
    return frames


def _labeller_steps(path_h5, cfg: dict, steps: int, iteration: int, out: Path, screen: dict,
                    n_images: int = 10) -> Path:
    """Labelled frames: ``n_images`` images of the potential's path (Δ 1.8–2.9 Å), each relaxed ``steps``
    − 1 BFGS steps by the labeller under the path's constraint (the workflow's
    :func:`rarelearn.chem.labelling.labeller_steps`; the image and every step kept), and 2
    noisy copies of each of them (labelled too)."""
    import numpy as np

    from rarelearn.dataset import Frames

    path = read_frames(path_h5)
    ext = np.asarray(path.extras["extension"])
    window = np.flatnonzero((ext >= 1.8) & (ext <= 2.9))
    picks = window[np.linspace(0, len(window) - 1, min(n_images, len(window))).round().astype(int)]
    images = path.subset(picks)
    images.attrs = {}
    images.iteration[:] = iteration
    images.source[:] = "labeller-steps"
    frames = _each_with_its_way(images, cfg, path.attrs["pull"], steps)   # each image followed by its steps
    write_frames(out / "way.h5", frames)
    label_step(out / "way.h5", cfg["labeller"], out / "way_labelled.h5", screen=screen)
    copies = augment(frames, 2, 0.05, seed=iteration)
    copies.extras = {}
    write_frames(out / "copies.h5", copies)
    label_step(out / "copies.h5", cfg["labeller"], out / "copies_labelled.h5", screen=screen)
    both = Frames.concatenate([read_frames(out / "way_labelled.h5"), read_frames(out / "copies_labelled.h5")])
    write_frames(out / "labeller_steps.h5", both)
    print(f"{len(picks)} path images x {steps} labeller steps = {len(frames)} frames, + {len(copies)} copies")
    return out / "labeller_steps.h5"


def _soft_mode(it: Path, res: Path, cfg: dict, iteration: int, out: Path, screen: dict, n_images: int,
               steps: int = 0) -> Path:
    """Labelled frames: ``n_images`` images of the best member's path near its maximum, their
    soft-mode displacements, and 1 noisy copy of each; with ``steps``, the labeller's
    relaxations from the displaced images instead (see the module's docstring)."""
    import json

    import numpy as np

    from rarelearn.chem.molecules import load_prepared_molecule
    from rarelearn.dataset import Frames
    from rarelearn.learning.soft_modes import soft_mode_frames, window_images
    from rarelearn.models.files import load_model, make_calculator

    path = read_frames(it / "cogef.h5")
    _, g1, g2 = load_prepared_molecule(res / "reference" / "molecule.xyz")
    best = json.loads((it / "best.json").read_text())["best_member"]
    calc = make_calculator(load_model(it / "ensemble.pt"), member=best)
    if steps > 1:
        moved = soft_mode_frames(path, calc, (g1[0], g2[0]), window=0.05, n_images=n_images, amplitudes=(0.1,))
        starts = moved.subset(np.arange(0, len(moved), 2))
        print("starts at extension", ", ".join(f"{x:.3f} Å" for x in starts.extras["extension"]),
              "; softest eigenvalues", ", ".join(f"{w:+.3f}" for w in starts.extras["soft_mode_eigenvalue"]))
        starts.iteration[:] = iteration
        starts.source[:] = "soft-mode-steps"
        frames = _each_with_its_way(starts, cfg, (g1[0], g2[0]), steps)
        copies = augment(frames.subset(np.arange(0, len(frames), 4)), 1, 0.05, seed=iteration)
        copies.extras = {}
        both = Frames.concatenate([frames, copies])
        write_frames(out / "soft_mode.h5", both)
        label_step(out / "soft_mode.h5", cfg["labeller"], out / "soft_mode_labelled.h5", screen=screen)
        lab_fr = read_frames(out / "soft_mode_labelled.h5")
        e = lab_fr.energy[:len(frames)]
        for k in range(len(starts)):
            seg = e[k * steps:(k + 1) * steps]
            print(f"  start {k}: labeller energy falls {(seg[0] - np.nanmin(seg)) * 23.0605:.1f} kcal/mol in {steps - 1} steps")
        print(f"{len(frames)} frames + {len(copies)} copies: {int(lab_fr.ok.sum())} labelled")
        return out / "soft_mode_labelled.h5"
    images = path.subset(window_images(path, 0.3, n_images))
    moved = soft_mode_frames(path, calc, (g1[0], g2[0]), window=0.3, n_images=n_images)
    w = moved.extras["soft_mode_eigenvalue"][::4]
    print(f"{len(images)} images (extension {images.extras['extension'].min():.3f}-"
          f"{images.extras['extension'].max():.3f} Å), softest eigenvalue {w.min():+.3f} … {w.max():+.3f} eV/Å²")
    images.extras, moved.extras = {}, {}
    frames = Frames.concatenate([images, moved])
    frames.source[:], frames.iteration[:] = "soft-mode", iteration
    copies = augment(frames, 1, 0.05, seed=iteration)
    copies.extras = {}
    both = Frames.concatenate([frames, copies])
    write_frames(out / "soft_mode.h5", both)
    label_step(out / "soft_mode.h5", cfg["labeller"], out / "soft_mode_labelled.h5", screen=screen)
    lab = read_frames(out / "soft_mode_labelled.h5")
    print(f"{len(frames)} soft-mode frames + {len(copies)} copies: {int(lab.ok.sum())} labelled")
    return out / "soft_mode_labelled.h5"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--campaign", required=True, type=Path, help="a finished campaign's work directory")
    p.add_argument("--iteration", required=True, type=int, help="the iteration whose selection is replaced (>= 1)")
    p.add_argument("--out", required=True, type=Path, help="the work directory to build")
    src_kind = p.add_mutually_exclusive_group(required=True)
    src_kind.add_argument("--pulls", help="atom pairs i-j,k-l,...: the best member's COGEF scans of each")
    src_kind.add_argument("--reference-path", action="store_true", help="the reference's COGEF images (diagnostic)")
    src_kind.add_argument("--labeller-steps", type=int, help="labeller relaxation steps from the potential's path images")
    src_kind.add_argument("--soft-mode", action="store_true", help="the best member's path near its maximum, "
                          "displaced along the softest constrained mode")
    p.add_argument("--images", type=int, default=None,
                   help="path images used (--labeller-steps: default 10; --soft-mode: default 15, 3 with --soft-mode-steps)")
    p.add_argument("--soft-mode-steps", type=int, default=0,
                   help="--soft-mode: the labeller's relaxation of N - 1 steps from each displaced image")
    args = p.parse_args(argv)
    src, out = args.campaign / "results", args.out
    it = src / f"iter_{args.iteration:03d}"
    res = out / "results"
    res.mkdir(parents=True, exist_ok=True)
    cfg = campaign_config({})
    screen = {k: cfg["labelling"][k] for k in ("max_force", "min_distance")}
    labelled = []
    if args.pulls:
        scans = []
        for k, pair in enumerate(args.pulls.split(",")):
            pull = tuple(int(x) for x in pair.split("-"))
            s = cogef_step(src / "reference" / "molecule.xyz", cfg["cogef"], out / f"scan_{k}.h5",
                           out / f"scan_{k}.json", ensemble_path=it / "ensemble.pt", best_json=it / "best.json",
                           pull=pull)
            print(f"scan {pull}: E_max {s['e_max']:.3f} eV at {s['extension_at_max']:.3f} Å, breaks "
                  f"{s['broken_label']}, committee spread up to {max(s['uq_sigma']):.3f} eV")
            scans.append(out / f"scan_{k}.h5")
        select_step(it / "uq.h5", sorted((it / "smd").glob("replica_*.h5")), cfg["selection"], 50, args.iteration,
                    out / "selected", cogef_paths=scans, smd=False)
        for b in sorted((out / "selected").glob("batch_*.h5")):
            (out / "labelled").mkdir(exist_ok=True)
            label_step(b, cfg["labeller"], out / "labelled" / b.name, screen=screen)
            labelled.append(out / "labelled" / b.name)
    elif args.labeller_steps:
        labelled = [_labeller_steps(it / "cogef.h5", cfg, args.labeller_steps, args.iteration, out, screen,
                                    args.images or 10)]
    elif args.soft_mode:
        labelled = [_soft_mode(it, src, cfg, args.iteration, out, screen,
                               args.images or (3 if args.soft_mode_steps > 1 else 15), args.soft_mode_steps)]
    else:
        ref = read_frames(src / "reference" / "cogef.h5")
        ref.extras, ref.source[:], ref.iteration[:] = {}, "refpath", args.iteration
        copies = augment(ref, 2, 0.05, seed=args.iteration)
        copies.extras = {}
        write_frames(out / "copies.h5", copies)
        label_step(out / "copies.h5", cfg["labeller"], out / "copies_labelled.h5", screen=screen)
        write_frames(out / "reference_path.h5", ref)
        labelled = [out / "reference_path.h5", out / "copies_labelled.h5"]
    for d in ("reference", "iter_000"):
        if not (res / d).exists():
            os.symlink((src / d).resolve(), res / d)
    t = res / it.name
    t.mkdir(exist_ok=True)
    for f in ("best.json", "ensemble.pt"):
        shutil.copy(it / f, t / f)
    if not (t / "models").exists():
        shutil.copytree(it / "models", t / "models")
    info = merge_step(src / f"iter_{args.iteration - 1:03d}" / "merged.h5", labelled, args.iteration,
                      t / "merged.h5", t / "merge.json")
    print(f"{t / 'merged.h5'}: {info['previous_frames']} + {info['added']} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
