"""A committee on molecules it was not trained on, measured as a campaign measures a
held-out molecule: its best member's SMD pulls (the reference's seeds and protocol) and COGEF
scan against the labeller's reference stage of that molecule, through the workflow's own
steps (steps.sample.smd_batch_step, cogef_step, steps.evaluate.evaluate_step). For comparing
a family campaign's held-out molecules with a one-molecule campaign's potential on the same
molecules (the reference stages of the family run serve both).

    python benchmarks/held_out.py --committee /tmp/hexane/results/iter_003 \\
        --reference /tmp/family/results/reference/molecules/C5 /tmp/family/results/reference/molecules/C8 \\
        --out /tmp/held_out [--config my.yaml]

--committee: an iteration folder (ensemble.pt, best.json, models/member_K.json); --reference:
a molecule's reference folder (molecule.xyz, barrier.json, cogef.json, cogef.h5, smd/);
--config: the campaign's config (smd, cogef, reference.smd_seed and replicas as it ran). Each
molecule is pulled as its reference was (the pull steps its reference replicas record, so a long
chain of a family is pulled as far as the labeller pulled it) and an n-alkane is scanned by COGEF
as far as a family scans it (``campaign_molecules.alkane_cogef_extension``).
Prints per molecule SMD |ΔE_a| (to the break) ± SE, the bonds the pulls break against the
reference's, COGEF |ΔE_max| and its bond, the energy MAE on the reference's frames.
--cogef-only: the COGEF scan alone (reference folders need only molecule.xyz, cogef.json and
cogef.h5); prints ΔE_max, ΔE at each profile's own force maximum, the loaded chain's error where
both hold, the break shift, ΔF_max, and how much of each E_max lies past the force maximum;
with --label-path also the potential's largest energy error on its own COGEF images up to its
E_max (labelled with the config's labeller) and on the reference's; with --path-frames DIR
the potential's whole scan and two noisy copies of each image, labelled, to DIR/MOLECULE.h5
(a hand round of the COGEF sampler: `dense_break.py --extra` trains on them). Every row ends with the
difference of the pulled atoms' distance at rest (the potential's relaxed molecule against the
reference's) and the break shift in that distance rather than in the extension: a potential
whose molecule at rest is shorter breaks "late" by extension at the right distance.
Run on demand; not a test.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import ase.io
import h5py

from rarelearn.campaign_molecules import alkane_cogef_extension
from rarelearn.config import DEFAULT_CONFIG, campaign_config, command_line_overrides
from rarelearn.steps.evaluate import evaluate_step
from rarelearn.steps.sample import cogef_step, smd_batch_step


def reference_protocol(reference: Path, cfg: dict) -> tuple[dict, dict]:
    """The ``smd`` and ``cogef`` sections to measure the reference's molecule with: the pull
    steps of its first reference replica (its recorded protocol), and for an n-alkane C_nH_2n+2
    the COGEF extent a family gives it."""
    smd = {k: v for k, v in cfg["smd"].items() if k != "batch"}
    with h5py.File(sorted((reference / "smd").glob("replica_*.h5"))[0], "r") as h5:
        smd["pull_steps"] = int(json.loads(h5.attrs["meta_protocol"])["pull_steps"])
    return smd, cogef_section(reference, cfg)


def cogef_section(reference: Path, cfg: dict) -> dict:
    """The ``cogef`` section to scan the reference's molecule with: for an n-alkane C_nH_2n+2
    the extent a family gives it."""
    cogef = dict(cfg["cogef"])
    numbers = ase.io.read(reference / "molecule.xyz").numbers
    n_c, n_h = int((numbers == 6).sum()), int((numbers == 1).sum())
    if n_c >= 2 and n_h == 2 * n_c + 2 and len(numbers) == n_c + n_h:
        cogef["max_extension"] = alkane_cogef_extension(cogef["max_extension"], n_c)
    return cogef


def measure(committee: Path, reference: Path, out: Path, cfg: dict, smd: dict, cogef: dict) -> dict:
    """The committee's pulls and COGEF scan of the reference's molecule (with the ``smd`` and
    ``cogef`` sections of :func:`reference_protocol`), and their evaluation."""
    out.mkdir(parents=True, exist_ok=True)
    replicas = cfg["reference"]["replicas"]
    seeds = [cfg["reference"]["smd_seed"] + r for r in range(replicas)]
    pulls = [out / "smd" / f"replica_{r:02d}.h5" for r in range(replicas)]
    molecule = reference / "molecule.xyz"
    if not all(p.exists() for p in pulls):
        (out / "smd").mkdir(exist_ok=True)
        smd_batch_step(molecule, smd, seeds, pulls, committee / "ensemble.pt", committee / "best.json")
    if not (out / "cogef.json").exists():
        cogef_step(molecule, cogef, out / "cogef.h5", out / "cogef.json",
                   ensemble_path=committee / "ensemble.pt", best_json=committee / "best.json")
    infos = sorted((committee / "models").glob("member_*.json"))
    unseen = sorted((reference / "smd").glob("replica_*.h5"))[: cfg["evaluation"]["mae_replicas"]]
    return evaluate_step(int(committee.name[len("iter_"):]), pulls, reference / "barrier.json", unseen,
                         committee / "ensemble.pt", committee / "best.json", infos, None, None,
                         out / "evaluation.json", molecule_xyz=molecule, cogef_json=out / "cogef.json",
                         reference_cogef_json=reference / "cogef.json",
                         reference_cogef_frames=reference / "cogef.h5")


def cogef_only(committee: Path, reference: Path, out: Path, cfg: dict) -> dict:
    """The committee's COGEF scan of the reference's molecule (``--cogef-only``: no pulls; the
    reference folder needs molecule.xyz, cogef.json and cogef.h5) against the reference's."""
    from rarelearn.learning.evaluation import cogef_comparison
    from rarelearn.steps.evaluate import _same_place

    out.mkdir(parents=True, exist_ok=True)
    if not (out / "cogef.json").exists():
        cogef_step(reference / "molecule.xyz", cogef_section(reference, cfg), out / "cogef.h5", out / "cogef.json",
                   ensemble_path=committee / "ensemble.pt", best_json=committee / "best.json")
    nnp = json.loads((out / "cogef.json").read_text())
    ref = json.loads((reference / "cogef.json").read_text())
    return {**cogef_comparison(nnp, ref, _same_place(reference / "molecule.xyz", ref["pull"])), "nnp": nnp, "ref": ref}


def path_errors(committee: Path, reference: Path, out: Path, lab) -> tuple[float, float, float]:
    """``--label-path``: the largest |potential − labeller| (kcal/mol, each relative to its own first
    image) over the potential's own COGEF images up to its E_max (labelled here, one single point
    each), the extension where it is largest, and the same over the reference's images up to its
    E_max (the potential's energies of the labeller's geometries). A relaxed scan finds the
    potential's holes; the reference's path cannot (issue 20). ``lab``: the campaign's labeller."""
    import numpy as np

    from rarelearn.dataset import read_frames
    from rarelearn.models.files import load_model
    from rarelearn.units import KCAL_MOL_PER_EV

    def upto_max(path_json: Path, frames):
        e_max_at = json.loads(path_json.read_text())["extension_at_max"]
        return np.flatnonzero(frames.extras["extension"] <= e_max_at + 1e-9)

    own = read_frames(out / "cogef.h5")
    k = upto_max(out / "cogef.json", own)
    labelled = lab.label(own.subset(np.concatenate([[0], k])))
    pot = own.extras["potential_energy"][np.concatenate([[0], k])]
    d_own = KCAL_MOL_PER_EV * ((pot[1:] - pot[0]) - (labelled.energy[1:] - labelled.energy[0]))
    worst = int(np.nanargmax(np.abs(d_own)))
    ref = read_frames(reference / "cogef.h5")
    kr = upto_max(reference / "cogef.json", ref)
    best = json.loads((committee / "best.json").read_text())["best_member"]
    e, _ = load_model(committee / "ensemble.pt").energies_forces(ref.numbers, ref.positions[kr])
    d_ref = KCAL_MOL_PER_EV * ((e[best] - e[best][0]) - (ref.energy[kr] - ref.energy[kr][0]))
    return float(d_own[worst]), float(own.extras["extension"][k][worst]), float(d_ref[np.argmax(np.abs(d_ref))])


def path_frames(out: Path, lab, dest: Path, copies: int = 2, amplitude: float = 0.05,
                window: float | None = None) -> tuple[int, int]:
    """``--path-frames``: the potential's whole COGEF scan in ``out`` (images at least 0.01 Å
    apart; with ``window``, only those within ``window`` Å of its force maximum's extension)
    and ``copies`` noisy copies of each (``amplitude`` Å, as the selection augments),
    labelled; the frames that labelled are written to ``dest`` (a hand round of the COGEF
    sampler on a molecule not in the campaign). Returns (frames, labelled)."""
    import json

    import numpy as np

    from rarelearn.dataset import Frames, read_frames, write_frames
    from rarelearn.learning.selection import augment

    scan = read_frames(out / "cogef.h5")
    ext = scan.extras["extension"]
    keep = [0]
    for k in range(1, len(scan)):
        if abs(ext[k] - ext[keep[-1]]) >= 0.01:
            keep.append(k)
    if window is not None:
        at = json.loads((out / "cogef.json").read_text())["extension_at_f_max"]
        keep = [k for k in keep if abs(ext[k] - at) <= window]
    images = scan.subset(keep)
    images = Frames(numbers=images.numbers, positions=images.positions, source="cogef",
                    extras={"extension": images.extras["extension"]})
    # the noisy copies' extras beyond the extension are dropped by concatenate (common keys only)
    frames = lab.label(Frames.concatenate([images, augment(images, copies, amplitude, seed=7)]))
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_frames(dest, frames.subset(np.flatnonzero(frames.ok)))
    return len(frames), int(frames.ok.sum())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--committee", required=True, type=Path)
    p.add_argument("--reference", required=True, type=Path, nargs="+")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--config", type=Path, nargs="*", default=[])
    p.add_argument("--cogef-only", action="store_true",
                   help="the COGEF scan alone: E_max, E at the force maximum, and how much of E_max lies past it")
    p.add_argument("--label-path", action="store_true",
                   help="with --cogef-only: label the potential's own COGEF images up to its E_max and print its "
                        "largest energy error there (and on the reference's images)")
    p.add_argument("--path-frames", type=Path,
                   help="with --cogef-only: label the potential's whole COGEF scan of each molecule (and 2 noisy "
                        "copies of each image) and write them to DIR/MOLECULE.h5, training frames for a next round")
    p.add_argument("--path-window", type=float,
                   help="with --path-frames: only the images within this many Å of the potential's force maximum "
                        "(where a long chain gives way), not the whole scan")
    args = p.parse_args(argv)
    cfg = campaign_config(command_line_overrides(args.config, []), base_file=DEFAULT_CONFIG, check_labeller=False)
    if args.cogef_only:
        print(f"{'molecule':>9} {'dE_max':>7} {'dE@F_max':>8} {'intact':>7} {'shift':>7} {'dF_max':>7} "
              f"{'E_max past F_max: pot (ref)':>28} {'bond (ref)':>22}"
              + (f" {'own path err @ Δ':>17} {'ref path err':>12}" if args.label_path else "")
              + f" {'d0 diff':>7} {'shift in d':>10} {'s':>5}")
        print(f"{'':>9} {'kcal':>7} {'kcal':>8} {'kcal':>7} {'Å':>7} {'eV/Å':>7} {'kcal/mol':>28} {'':>22}"
              + (f" {'kcal @ Å':>17} {'kcal':>12}" if args.label_path else "") + f" {'Å':>7} {'Å':>10}")
        lab = None
        if args.label_path or args.path_frames:
            from rarelearn.chem.labellers import make_labeller
            lab = make_labeller(cfg["labeller"]["name"], cfg["labeller"].get("options") or {})
        for ref in args.reference:
            t0 = time.time()
            c = cogef_only(args.committee.resolve(), ref.resolve(), args.out / ref.name, cfg)
            bond = (f"{c['nnp'].get('broken_label') or '-'}{'' if c['cogef_same_bond'] else ' ✗'} "
                    f"({c['ref'].get('broken_label') or '-'})")
            past = f"{c['cogef_e_max_past_f_max_kcal']:.1f} ({c['ref_cogef_e_max_past_f_max_kcal']:.1f})"
            holes = ""
            if args.label_path:
                d_own, at, d_ref = path_errors(args.committee.resolve(), ref.resolve(), args.out / ref.name, lab)
                holes = f" {f'{d_own:+.1f} @ {at:.3f}':>17} {d_ref:>+12.1f}"
            print(f"{ref.name:>9} {c['cogef_delta_e_max_kcal']:>+7.1f} {c['cogef_delta_e_at_f_max_kcal']:>+8.1f} "
                  f"{c['cogef_intact_delta_kcal']:>+7.1f} {c['cogef_break_shift']:>+7.3f} {c['cogef_delta_f_max']:>+7.2f} "
                  f"{past:>28} {bond:>22}{holes} {c['cogef_d0_delta']:>+7.3f} "
                  f"{c['cogef_break_shift_distance']:>+10.3f} "
                  f"{time.time() - t0:>5.0f}", flush=True)
            if args.path_frames:
                n, ok = path_frames(args.out / ref.name, lab, args.path_frames / f"{ref.name}.h5",
                                    window=args.path_window)
                print(f"{'':>9} its scan: {ok} of {n} frames labelled -> {args.path_frames / ref.name}.h5", flush=True)
        return 0
    print(f"{'molecule':>9} {'pull':>6} {'SMD |dEa|':>9} {'± SE':>5} {'SMD bonds (reference)':>44} {'COGEF |dEmax|':>13} "
          f"{'bond (ref)':>22} {'E MAE meV':>9} {'s':>5}")
    for ref in args.reference:
        t0 = time.time()
        smd, cogef = reference_protocol(ref, cfg)
        ev = measure(args.committee.resolve(), ref.resolve(), args.out / ref.name, cfg, smd, cogef)
        bonds = f"{ev.get('nnp_smd_bonds') or '-'} ({ev.get('ref_smd_bonds') or '-'})"
        cogef_bond = f"{ev.get('nnp_cogef_broken_label') or '-'} ({ev.get('ref_cogef_broken_label') or '-'})"
        print(f"{ref.name:>9} {smd['pull_steps']:>6} {ev['abs_delta_ea_kcal']:>9.2f} {ev['delta_ea_stderr_kcal']:>5.2f} {bonds:>44} "
              f"{ev.get('cogef_abs_delta_e_max_kcal', float('nan')):>13.2f} {cogef_bond:>22} "
              f"{1000 * ev['unseen_energy_mae']:>9.1f} {time.time() - t0:>5.0f}")
    (args.out / "committee.json").write_text(json.dumps({"committee": str(args.committee.resolve())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
