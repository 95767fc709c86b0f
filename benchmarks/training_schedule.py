"""Training schedules measured (issue 17: training that converges): one ensemble member
trained on a campaign's data set with each schedule, the same split and seed; per schedule
the epochs run, where the best epoch fell, the learning rates visited, validation energy and
force MAE, and what decides the barrier: the error on the reference COGEF images (held-out
test data) and on the COGEF barrier read off them, E(image at the reference maximum) − E(start).

    python benchmarks/training_schedule.py --campaign /tmp/d --iteration 2
    python benchmarks/training_schedule.py --campaign /tmp/d --iteration 2 \\
        --schedule epochs=50,lr_patience=10,early_stopping_patience=20 \\
        --schedule epochs=150,lr_patience=5,early_stopping_patience=30

    python benchmarks/training_schedule.py --campaign /tmp/c --iteration 2 --members 0 1 2 --cogef \
        --schedule epochs=100,lr_patience=3,early_stopping_patience=15,lr=0.0003
    python benchmarks/training_schedule.py --campaign /tmp/c --iteration 2 --members 0 1 2 --cogef \
        --repeat-selected 5 --schedule epochs=50,lr_patience=10,early_stopping_patience=20

The data set is results/iter_NNN/merged.h5 of the campaign (what iteration NNN + 1 trains
on), each member is warm-started from its own parameters of iteration NNN as the workflow
does (``--cold`` trains from scratch). ``--cogef``: each trained member's own COGEF profile
from the campaign's prepared molecule with the campaign's COGEF settings, its ΔE_max
against the reference's and where it breaks (the members of one committee can part on the
stretched bond; a schedule that converges should bring them together). Run on demand; not a
test.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from rarelearn.config import campaign_config
from rarelearn.dataset import read_frames
from rarelearn.steps.train import train_member_step
from rarelearn.models.files import load_model
from rarelearn.units import KCAL_MOL_PER_EV

DEFAULT_SCHEDULES = [
    "epochs=50,lr_patience=10,early_stopping_patience=20",      # the defaults before issue 17
    "epochs=150,lr_patience=5,early_stopping_patience=30",
]


def parse(text: str) -> dict:
    out = {}
    for item in text.split(","):
        k, v = item.split("=")
        out[k.strip()] = None if v.strip().lower() == "none" else (float(v) if "." in v or "e-" in v else int(v))
    return out


def _cogef(model, res: Path, cogef_cfg: dict) -> str:
    """`` dEmax break``: the (one-member) model's COGEF maximum against the reference's,
    kcal/mol, and the extension it breaks at, Å ('no break' when it holds to the end)."""
    import json

    from rarelearn.chem.molecules import load_prepared_molecule
    from rarelearn.md.cogef import cogef_profile, cogef_settings
    from rarelearn.models.files import make_calculator

    atoms, g1, g2 = load_prepared_molecule(res / "reference" / "molecule.xyz")
    ref = json.loads((res / "reference" / "cogef.json").read_text())
    prof = cogef_profile(atoms, make_calculator(model, member=0), (g1[0], g2[0]), **cogef_settings(cogef_cfg))
    # Past the break: the member's last image against the reference's energy there (its
    # fragments' plateau, flat past its break): a stretched, still-bonded branch of the
    # member's shows as a large positive gap.
    ref_frames = read_frames(res / "reference" / "cogef.h5")
    ref_ext, ref_e = ref_frames.extras["extension"], ref_frames.energy - ref["e0"]
    order = np.argsort(ref_ext)
    end = float(np.interp(prof.extension[-1], ref_ext[order], ref_e[order]))
    post = f" {(prof.energy[-1] - end) * KCAL_MOL_PER_EV:>+7.1f}@{prof.extension[-1]:.2f}"
    if not prof.broke:
        return f" {'no break':>14}{post}"
    return f" {(prof.e_max - ref['e_max']) * KCAL_MOL_PER_EV:>+7.1f} {prof.break_extension:>6.2f}{post} {prof.brk.label}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--campaign", required=True, type=Path, help="a campaign's work directory")
    p.add_argument("--iteration", type=int, required=True)
    p.add_argument("--schedule", action="append", default=None, help="key=value,... over training.*")
    p.add_argument("--members", type=int, nargs="+", default=[0], help="members to train (each its own seed and split)")
    p.add_argument("--cogef", action="store_true", help="each trained member's COGEF ΔE_max and break extension")
    p.add_argument("--cold", action="store_true", help="train from scratch (no warm start)")
    p.add_argument("--repeat-selected", type=int, default=1, metavar="K",
                   help="every frame not of the MD set K times in the training data (a loss weight K on "
                        "the selected frames and their copies; copies share their frame's split)")
    args = p.parse_args(argv)
    res = args.campaign / "results"
    it = res / f"iter_{args.iteration:03d}"
    data = it / "merged.h5"
    keep = tempfile.TemporaryDirectory()
    if args.repeat_selected > 1:
        from rarelearn.dataset import write_frames

        frames = read_frames(data)
        sel = np.flatnonzero(frames.source != "md")
        data = Path(keep.name) / "merged.h5"
        write_frames(data, frames.subset(np.concatenate([np.arange(len(frames))] + [sel] * (args.repeat_selected - 1))))
        print(f"{len(sel)} selected frames (not md) x {args.repeat_selected}")
    cfg = campaign_config()
    ref = read_frames(res / "reference" / "cogef.h5")
    ref_e = ref.energy
    k_max = int(np.argmax(np.where(ref.extras["intact"] > 0, ref_e, -np.inf)))
    ref_barrier = ref_e[k_max] - ref_e[0]
    print(f"data {data} ({len(read_frames(data))} frames); reference COGEF: "
          f"{len(ref)} images, barrier {ref_barrier:.4f} eV at image {k_max}")
    print(f"{'schedule':<58} {'member':>6} {'epochs':>6} {'best':>4} {'min lr':>8} {'val E':>6} {'val F':>6} "
          f"{'COGEF E MAE':>11} {'dBarrier':>8} {'s':>5}" + (f" {'dEmax':>7} {'break':>6} {'dE_end@ext':>13}" if args.cogef else ""))
    print(f"{'':<58} {'':>6} {'':>6} {'':>4} {'':>8} {'meV':>6} {'meV/A':>6} {'meV':>11} {'kcal/mol':>8} {'':>5}"
          + (f" {'kcal':>7} {'A':>6} {'kcal@A':>13}" if args.cogef else ""))
    for text in args.schedule or DEFAULT_SCHEDULES:
        training = {**cfg["training"], **parse(text), "warm_start": not args.cold, "split": "inherited"}
        for member in args.members:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.time()
                info = train_member_step(data, res / "reference" / "atom_energies.json", cfg["model"],
                                         training, cfg["molecule"]["elements"], args.iteration + 1, member,
                                         Path(tmp) / "m.pt", Path(tmp) / "m.json", previous_dir=it,
                                         base_data_path=res / "iter_000" / "dataset.h5")
                wall = time.time() - t0
                model = load_model(Path(tmp) / "m.pt")
                pred = model.energies(ref.numbers, ref.positions)[0]
                cogef = _cogef(model, res, cfg["cogef"]) if args.cogef else ""
            h = info["history"]
            mae = np.abs((pred - pred[0]) - (ref_e - ref_e[0])).mean()
            d_barrier = ((pred[k_max] - pred[0]) - ref_barrier) * KCAL_MOL_PER_EV
            print(f"{text:<58} {member:>6} {h['epochs_run']:>6} {h['best_epoch']:>4} {min(h['epoch_lr']):>8.1e} "
                  f"{1000 * h['val_energy_mae']:>6.1f} {1000 * h['val_force_mae']:>6.1f} {1000 * mae:>11.1f} "
                  f"{d_barrier:>8.2f} {wall:>5.0f}{cogef}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
