"""Selection steps: the committee's σ on the SMD frames, and the frames to label written in
label batches (policy: :mod:`rarelearn.learning.selection`, :func:`rarelearn.learning.hal.hand_over`)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from ..chem.barrier import pull_began
from ..dataset import Frames, read_frames, write_frames
from ..atomic import atomic_path
from ..jsonio import read_json, write_json
from ..learning.selection import frames_to_label
from .common import log

__all__ = ["uq_step", "select_step", "hal_select_step", "family_budget"]


def uq_step(ensemble_path, replica_paths: Sequence, selection_cfg: dict, out) -> None:
    """Every member's energy on every SMD frame; σ per frame; μ+nσ threshold per replica over
    its first ``selection.uq_first_steps`` frames (one group per replica, named by its file's
    stem, attrs ``threshold`` and ``pull_began``; attr ``pulls``: their directory). A replica
    that blew up before the pull holds its relaxation's frames (at the pull's temperature,
    without the spring): its threshold is read off them, though its selection takes every
    frame (:func:`rarelearn.learning.selection.select_replica`); one without frames has an
    infinite threshold."""
    import h5py

    from ..models.files import load_model
    from ..learning.uq import member_energies, sigma, threshold

    ens = load_model(ensemble_path)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["units"] = "eV"
        # the directory of the pulls scored: smd (best member) or smd_hal (HAL-biased)
        h5.attrs["pulls"] = Path(replica_paths[0]).parent.name if len(replica_paths) else "smd"
        for p in replica_paths:
            fr = read_frames(p)
            g = h5.create_group(Path(p).stem)
            g.attrs["pull_began"] = pull_began(fr)
            if len(fr) == 0:
                g.create_dataset("energies", data=np.zeros((ens.n_members, 0)))
                g.create_dataset("sigma", data=np.zeros(0))
                g.attrs["threshold"] = np.inf
                continue
            e = member_energies(ens, fr)
            s = sigma(e)
            thr = threshold(s, n_first=selection_cfg["uq_first_steps"], n_sigma=selection_cfg["n_sigma"])
            g.create_dataset("energies", data=e)
            g.create_dataset("sigma", data=s)
            g.attrs["threshold"] = thr
            log.info("%s: σ mean %.4f eV, threshold %.4f eV, %d frames above", Path(p).stem, s.mean(), thr,
                     int((s > thr).sum()))


def _write_selection(out_dir, new: Frames | None, n_kept: int, batch_size: int, head: dict, tail: dict) -> dict:
    """Write the frames to label as ``out_dir/batch_NNNN.h5`` (``batch_size`` frames each) and
    ``out_dir/selection.json`` (``head``, the counts, ``tail``), all in a temporary directory
    renamed into place when complete. Returns the summary written."""
    out_dir = Path(out_dir)
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    n_batches = 0
    if new is not None:
        for b, start in enumerate(range(0, len(new), batch_size)):
            write_frames(tmp_dir / f"batch_{b:04d}.h5", new.subset(slice(start, start + batch_size)))
            n_batches += 1
    summary = {**head, "selected": n_kept, "augmented": 0 if new is None else len(new) - n_kept,
               "total_new": 0 if new is None else len(new), "batches": n_batches, "empty": n_kept == 0, **tail}
    write_json(tmp_dir / "selection.json", summary)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp_dir, out_dir)
    return summary


def _smd_picks(uq_path, replica_paths: Sequence, selection_cfg: dict) -> tuple[list, list, list]:
    """Per SMD replica, the frames to label (:func:`select_replica`). Returns (picked Frames,
    per-replica records, the replicas' UQ thresholds)."""
    import h5py

    from ..learning.selection import select_replica

    per_replica, picked, thresholds = [], [], []
    with h5py.File(uq_path, "r") as h5:
        for p in replica_paths:
            fr = read_frames(p)
            g = h5[Path(p).stem]
            head = {"replica": Path(p).stem, "file": str(p)}
            if len(fr) == 0:
                per_replica.append({**head, "pull_began": False, "candidates": 0, "kept": 0,
                                    "stop_reason": fr.attrs.get("stop_reason")})
                continue
            s = g["sigma"][()]
            thresholds.append(float(g.attrs["threshold"]))
            idx, rec = select_replica(fr, s, thresholds[-1], g["energies"][()], selection_cfg)
            if not rec["pull_began"]:
                log.warning("%s blew up before the pull (%s): all %d frames of its relaxation are candidates, "
                            "%d kept", head["replica"], rec["stop_reason"], len(fr), rec["kept"])
            sub = fr.subset(idx)
            post = idx >= rec["break_index"] if rec["break_index"] is not None else np.zeros(len(idx), dtype=bool)
            sub.extras = {"uq_sigma": s[idx], "post_break": post.astype(float)}
            picked.append(sub)
            per_replica.append({**head, **rec})
    return picked, per_replica, thresholds


def _thresholds(uq_path, replica_paths: Sequence) -> list[float]:
    """The UQ thresholds of the replicas that have frames (an empty one's is inf)."""
    import h5py

    with h5py.File(uq_path, "r") as h5:
        thr = [float(h5[Path(p).stem].attrs["threshold"]) for p in replica_paths]
    return [t for t in thr if np.isfinite(t)]


def family_budget(split: dict) -> dict:
    """A family's label budget for one molecule's selection, split by need
    (``selection.budget_split: cogef_error``, :func:`rarelearn.campaign_molecules.error_budget`).

    ``split`` (the workflow's ``selection.budget_split`` param): ``molecule`` (whose
    selection this is), ``max_frames`` (the iteration's budget), ``weights`` and, per
    trained molecule, ``cogef`` (the iteration's COGEF profile of the best member, its
    ``cogef.json``) and ``reference_cogef`` (the reference's), ``floor_kcal``. The error of a
    molecule is |E_max − E_max(reference)| of the two scans, also where one did not break
    (then a lower bound). Returns the record written to ``selection.json`` as ``budget``:
    the rule, every molecule's error and frames, and this molecule's."""
    from ..campaign_molecules import error_budget
    from ..units import KCAL_MOL_PER_EV

    errors = {name: abs(read_json(path)["e_max"] - read_json(split["reference_cogef"][name])["e_max"])
              * KCAL_MOL_PER_EV for name, path in split["cogef"].items()}
    frames = error_budget(split["max_frames"], split["weights"], errors, split["floor_kcal"])
    return {"rule": "cogef_error", "molecule": split["molecule"], "max_frames": frames[split["molecule"]],
            "iteration_max_frames": split["max_frames"], "floor_kcal": split["floor_kcal"],
            "errors_kcal": errors, "frames": frames}


def select_step(uq_path, replica_paths: Sequence, selection_cfg: dict, batch_size: int, iteration: int,
                out_dir, cogef_paths: Sequence | None = None, cogef_frames: int | None = None,
                smd: bool = True, descent_files: dict | None = None) -> dict:
    """Pick frames above the UQ threshold, screen, cap, augment; write them in label batches.

    SMD frames (``smd``) come from the scored replicas (source ``al``); with ``cogef_paths``
    (samplers ``cogef`` and ``smd+cogef``: the best member's COGEF path, or every member's
    with ``sampler.cogef_paths: all``) frames also come from the potential's COGEF paths
    (source ``cogef``, :func:`select_path` on each), judged against the median of the
    replicas' UQ thresholds (the same μ+nσ rule). Budget: the paths' frames together take at
    most ``cogef_frames`` (``selection.max_frames`` when no SMD frames are selected), spread
    evenly over the paths' kept images in path order; the SMD frames the rest of
    ``selection.max_frames``. With ``selection_cfg["labeller_steps"]`` N > 1 (the workflow
    sets it from ``sampler.labeller_steps``; 0 when absent) the paths' share is divided by N
    and each path image kept is marked (extras ``labeller_steps``, the pulled atoms in the
    batches' attrs ``cogef_pull``) for the label step to relax N − 1 steps with the labeller
    (:func:`rarelearn.steps.label.label_step`). With ``selection_cfg["descent"]`` (``{"steps":
    N, "images": K}``, from ``sampler.descent_steps`` and ``descent_images``) and
    ``descent_files`` (``path``: the best member's COGEF path, ``ensemble``, ``best``: its
    ``best.json``), K images near the path's maximum displaced along their softest mode
    (:func:`rarelearn.learning.soft_modes.descent_starts`, source ``soft-mode``) are added,
    and with ``"beyond"`` W > 0 in it (``sampler.descent_beyond``) K more on the potential's
    intact chain continued up to W Å past the maximum
    (:func:`rarelearn.learning.soft_modes.descent_starts_beyond`), each marked for N − 1
    labeller steps; they come on top of ``selection.max_frames``, without
    noisy copies. With ``selection.fragment_frames`` F > 0 (and SMD pulls), F frames of the
    pulls' fragments moved apart to ``selection.fragment_reach`` Å are added the same way
    (:func:`rarelearn.learning.fragments.fragments_apart`, source ``fragments``), and with
    ``selection.snap_frames`` S > 0 S frames of the pulls' snaps, from the last frame in which
    the breaking bond is a bond to the break (:func:`rarelearn.learning.fragments.snap_frames`,
    source ``snap``). With
    ``selection_cfg["branch"]`` (``{"images": B, "window": w}``, from ``sampler.branch_images``
    and ``branch_window``) B intact images of each COGEF path within w Å below its maximum, not
    already kept by the path's UQ selection, are added the same way whatever their committee
    spread (:func:`rarelearn.learning.selection.select_branch`, source ``cogef-branch``); with
    ``"steps"`` N > 1 in it (``sampler.branch_steps``) each is marked for N − 1 labeller steps.
    Writes ``out_dir/batch_NNNN.h5`` (unlabelled frames) and ``out_dir/selection.json``.
    An empty selection writes no batch and is recorded as such.
    """
    from ..learning.selection import cap_frames, select_branch, select_path

    budget = None
    if "budget_split" in selection_cfg:   # a family's budget split by need
        selection_cfg = dict(selection_cfg)
        budget = family_budget(selection_cfg.pop("budget_split"))
        selection_cfg["max_frames"] = budget["max_frames"]
        log.info("budget (COGEF error): %s", ", ".join(f"{k} {budget['frames'][k]} frames ({e:.1f} kcal/mol)"
                                                        for k, e in budget["errors_kcal"].items()))
    labeller_steps = int(selection_cfg.get("labeller_steps", 0))
    if smd:
        picked, per_replica, thresholds = _smd_picks(uq_path, replica_paths, selection_cfg)
    else:  # only the replicas' thresholds are needed
        picked, per_replica, thresholds = [], [], _thresholds(uq_path, replica_paths)
    max_frames = selection_cfg["max_frames"]
    parts, tail = [], {"replicas": per_replica, "sources": {}, **({"budget": budget} if budget else {})}
    on_branch, branch_cfg = [], selection_cfg.get("branch")
    if cogef_paths:
        cap = cogef_frames if smd else max_frames
        if cap is not None and max_frames is not None:
            cap = min(cap, max_frames)
        if labeller_steps > 1 and cap is not None:
            cap = max(1, cap // labeller_steps)
        pulls = set()
        threshold = float(np.median(thresholds)) if thresholds else float("nan")
        from_paths, tail["cogef"] = [], []
        for cogef_path in cogef_paths:
            path = read_frames(cogef_path)
            pulls.add(tuple(int(a) for a in path.attrs.get("pull", ())))
            idx, rec = select_path(path, threshold, selection_cfg, cap)
            rec["file"] = str(cogef_path)
            tail["cogef"].append(rec)
            if len(idx):
                sub = path.subset(idx)
                sub.extras = {"uq_sigma": np.asarray(path.extras["uq_sigma"])[idx]}
                from_paths.append(sub)
            if branch_cfg:
                b_idx, rec["branch"] = select_branch(path, int(branch_cfg["images"]), float(branch_cfg["window"]),
                                                     exclude=idx)
                if len(b_idx):
                    on_branch.append(path.subset(b_idx))
        if from_paths:
            sub = cap_frames(Frames.concatenate(from_paths), cap)
            sub.source[:] = "cogef"
            parts.append(sub)
            tail["sources"]["cogef"] = len(sub)
    if smd and picked:
        room = None if max_frames is None else max(max_frames - sum(len(p) for p in parts), 0)
        kept = cap_frames(Frames.concatenate(picked), room, selection_cfg.get("post_break_share"))
        kept.source[:] = "al"
        if len(kept):
            parts.append(kept)
            tail["sources"]["al"] = len(kept)
    kept = Frames.concatenate(parts) if parts else None
    n_kept = 0 if kept is None else len(kept)
    new = frames_to_label(kept, None, iteration, selection_cfg) if n_kept else None
    if new is not None and labeller_steps > 1 and "cogef" in tail["sources"]:
        if len(pulls) != 1 or len(next(iter(pulls))) != 2:
            raise ValueError(f"sampler.labeller_steps: the COGEF paths' pulled atoms {sorted(pulls)} are not one pair")
        steps = np.zeros(len(new))
        steps[:n_kept][new.source[:n_kept] == "cogef"] = labeller_steps   # the images, not their noisy copies
        new.extras["labeller_steps"] = steps
        new.attrs["cogef_pull"] = list(next(iter(pulls)))
        tail["labeller_steps"] = {"steps": labeller_steps, "images": int((steps > 0).sum()),
                                  "pull": list(next(iter(pulls)))}
    descent = selection_cfg.get("descent")
    if descent and descent_files:
        starts = _descent_starts(descent, descent_files, iteration)
        tail["descent"] = {"steps": int(descent["steps"]), "starts": len(starts),
                           "extensions": [float(x) for x in starts.extras.get("extension", ())],
                           "eigenvalues": [float(w) for w in starts.extras.get("soft_mode_eigenvalue", ())],
                           "pull": list(starts.attrs["cogef_pull"])}
        if len(starts):
            new, n_kept = _add_extra(new, n_kept, starts, "soft-mode", iteration, tail, steps=int(descent["steps"]),
                                     pull=starts.attrs["cogef_pull"])
    if on_branch:
        new, n_kept = _add_extra(new, n_kept, Frames.concatenate(on_branch), "cogef-branch", iteration, tail,
                                 steps=int(branch_cfg.get("steps", 0)),
                                 pull=next(iter(pulls)) if len(pulls) == 1 else None)
    if smd and int(selection_cfg.get("fragment_frames", 0)) > 0:
        new, n_kept = _add_fragments(new, n_kept, replica_paths, selection_cfg, iteration, tail)
    if smd and int(selection_cfg.get("snap_frames", 0)) > 0:
        new, n_kept = _add_snap(new, n_kept, replica_paths, int(selection_cfg["snap_frames"]), iteration, tail)
    summary = _write_selection(out_dir, new, n_kept, batch_size, {"iteration": iteration}, tail)
    if n_kept == 0:
        log.warning("iteration %d: empty selection (no frame above the UQ threshold survived screening)",
                    iteration)
    else:
        log.info("iteration %d: selected %d frames (%s) + %d augmented, %d label batches", iteration, n_kept,
                 ", ".join(f"{k} {v}" for k, v in tail["sources"].items()), summary["augmented"],
                 summary["batches"])
    return summary


def _add_extra(new: Frames | None, n_kept: int, extra: Frames, source: str, iteration: int, tail: dict,
               steps: int = 0, pull=None) -> tuple:
    """``extra`` (source ``source``) added to the frames to label, on top of the selection and
    without noisy copies; with ``steps`` N > 0 each marked for N − 1 labeller steps under the
    constraint of the pulled atoms ``pull`` (extras ``labeller_steps``, attrs ``cogef_pull``).
    Returns the frames to label and the count of frames selected."""
    extra = frames_to_label(extra, source, iteration, {"augment_copies": 0})
    if steps > 0:
        if pull is None or len(pull) != 2:
            raise ValueError(f"labeller steps from {source} frames: the pulled atoms {pull} are not one pair")
        if new is not None and list(new.attrs.get("cogef_pull", pull)) != list(pull):
            raise ValueError(f"labeller steps from {source} frames: the pulled atoms {list(pull)} differ from "
                             f"{new.attrs['cogef_pull']}")
        extra.extras = {"labeller_steps": np.full(len(extra), float(steps))}
        extra.attrs = {"cogef_pull": [int(a) for a in pull]}
        if new is not None and "labeller_steps" not in new.extras:
            new.extras = {**new.extras, "labeller_steps": np.zeros(len(new))}
    else:
        extra.extras = ({"labeller_steps": np.zeros(len(extra))}
                        if new is not None and "labeller_steps" in new.extras else {})
    tail["sources"][source] = len(extra)
    return (extra if new is None else Frames.concatenate([new, extra])), n_kept + len(extra)


def _add_fragments(new: Frames | None, n_kept: int, replica_paths: Sequence, selection_cfg: dict, iteration: int,
                   tail: dict) -> tuple:
    """``selection.fragment_frames`` frames of the pulls' fragments moved apart
    (:func:`rarelearn.learning.fragments.fragments_apart`), on top of the selection, without
    noisy copies. Returns the frames to label and the count of frames selected."""
    from ..learning.fragments import fragments_apart
    frag, bonds = fragments_apart([read_frames(p) for p in replica_paths], int(selection_cfg["fragment_frames"]),
                                  float(selection_cfg["fragment_reach"]), iteration)
    tail["fragments"] = {"frames": 0 if frag is None else len(frag), "reach": float(selection_cfg["fragment_reach"]),
                         "bonds": bonds, "bond_lengths": [] if frag is None else
                         [float(x) for x in frag.extras["fragment_bond_length"]]}
    if frag is None:
        log.warning("iteration %d: selection.fragment_frames: no pull ended in two fragments closer than %.1f Å",
                    iteration, float(selection_cfg["fragment_reach"]))
        return new, n_kept
    return _add_extra(new, n_kept, frag, "fragments", iteration, tail)


def _add_snap(new: Frames | None, n_kept: int, replica_paths: Sequence, n_frames: int, iteration: int,
              tail: dict) -> tuple:
    """``selection.snap_frames`` frames of the pulls' snaps, up to their break
    (:func:`rarelearn.learning.fragments.snap_frames`), on top of the selection, without noisy
    copies. Returns the frames to label and the count of frames selected."""
    from ..learning.fragments import snap_frames
    snap, bonds = snap_frames([read_frames(p) for p in replica_paths], n_frames, iteration)
    tail["snap"] = {"frames": 0 if snap is None else len(snap), "bonds": bonds,
                    "bond_lengths": [] if snap is None else [float(x) for x in snap.extras["snap_bond_length"]]}
    if snap is None:
        log.warning("iteration %d: selection.snap_frames: no pull broke", iteration)
        return new, n_kept
    return _add_extra(new, n_kept, snap, "snap", iteration, tail)


def _descent_starts(descent: dict, files: dict, iteration: int) -> Frames:
    """The starts of the labeller's way down from the best member's COGEF maximum (see
    :func:`select_step`), unlabelled, attrs ``cogef_pull``."""
    from ..learning.soft_modes import descent_starts, descent_starts_beyond
    from ..models.files import load_model, make_calculator

    path = read_frames(files["path"])
    pull = tuple(int(a) for a in path.attrs["pull"])
    best = read_json(files["best"])["best_member"]
    calc = make_calculator(load_model(files["ensemble"]), member=best)
    starts = descent_starts(path, calc, pull, n_images=int(descent["images"]))
    if float(descent.get("beyond", 0.0)) > 0:
        past = descent_starts_beyond(path, calc, pull, beyond=float(descent["beyond"]),
                                     n_images=int(descent["images"]))
        starts = Frames.concatenate([starts, past]) if len(past) else starts
    starts.iteration[:] = iteration
    starts.status[:] = "unlabelled"
    starts.attrs = {"cogef_pull": list(pull)}
    log.info("descent: %d starts near the COGEF maximum (Δ %s Å; softest eigenvalues %s eV/Å²), %d labeller "
             "steps each", len(starts), ", ".join(f"{x:.3f}" for x in starts.extras.get("extension", ())),
             ", ".join(f"{w:+.3f}" for w in starts.extras.get("soft_mode_eigenvalue", ())), int(descent["steps"]) - 1)
    return starts


def hal_select_step(run_paths: Sequence, selection_cfg: dict, batch_size: int, iteration: int, out_dir) -> dict:
    """Sampler ``hal``: the frame each HAL run handed over (``attrs["hal_pick"]``, see
    :func:`hal_run`), plus ``selection.augment_copies`` noisy copies of each; written in
    label batches like :func:`select_step` (``out_dir/batch_NNNN.h5``, ``selection.json``).
    The frames keep source ``hal``; no UQ threshold or similarity screening is applied."""
    picked, per_run = [], []
    for p in run_paths:
        fr = read_frames(p)
        pick = int(fr.attrs.get("hal_pick", -1))
        rec = {"run": Path(p).stem, "fired": bool(fr.attrs.get("hal_fired", False)), "pick": pick,
               "reason": fr.attrs.get("hal_pick_reason"), "stop_reason": fr.attrs.get("stop_reason"),
               "steps_done": fr.attrs.get("steps_done")}
        if 0 <= pick < len(fr):
            sub = fr.subset([pick])
            rec.update({"step": int(sub.extras["step"][0]), "score": float(sub.extras["hal_score"][0]),
                        "hash": str(sub.hashes[0])})
            picked.append(sub)
        per_run.append(rec)
    kept = Frames.concatenate(picked) if picked else None
    n_kept = 0 if kept is None else len(kept)
    new = frames_to_label(kept, "hal", iteration, selection_cfg) if n_kept else None
    summary = _write_selection(out_dir, new, n_kept, batch_size, {"iteration": iteration, "sampler": "hal"},
                               {"fired": sum(r["fired"] for r in per_run), "runs": per_run})
    log.info("iteration %d: %d of %d HAL runs fired; %d frames handed over + %d augmented, %d label batches",
             iteration, summary["fired"], len(per_run), n_kept, summary["augmented"], summary["batches"])
    return summary


