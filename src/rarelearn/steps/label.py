"""Labelling steps: one batch labelled (and screened), and the labels merged into the data
set (the safety rules: :mod:`rarelearn.chem.labelling`)."""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..chem.labelling import label_batch
from ..dataset import STATUS_SCREENED, Frames, merge_frames, read_frames, write_frames
from ..jsonio import write_json
from .common import log

__all__ = ["label_step", "merge_step"]


def label_step(batch_path, labeller_cfg: dict, out, attempt: int = 1, frame_timeout_s: float | None = None,
               screen: dict | None = None) -> Frames:
    """Label one batch (:func:`rarelearn.chem.labelling.label_batch`: failed and screened
    frames kept but not trained on; on a retry, ``attempt`` > 1, every frame in its own
    process with ``frame_timeout_s``) and write it with the time it took. Frames the
    selection marked (sampler ``labeller_steps``) are first relaxed by the labeller a few
    steps (:func:`rarelearn.chem.labelling.labeller_steps`) and every structure on the way is
    labelled too; a retry labels the batch's own frames only."""
    from ..chem.labellers import make_labeller
    from ..chem.labelling import labeller_steps

    frames = read_frames(batch_path)
    labeller = make_labeller(labeller_cfg["name"], labeller_cfg.get("options") or {})
    t0 = time.time()
    marked = np.asarray(frames.extras.get("labeller_steps", np.zeros(len(frames)))) > 1
    if marked.any() and attempt == 1:
        more = labeller_steps(labeller, frames, frames.attrs["cogef_pull"])
        log.info("labeller steps: %d structures from %d path images", len(more), int(marked.sum()))
        if len(more):
            frames = Frames.concatenate([frames, more])
    elif marked.any():
        log.warning("attempt %d: the labeller steps of %d path images are left out (this batch's own frames "
                    "only)", attempt, int(marked.sum()))
    labelled = label_batch(labeller, frames, attempt, frame_timeout_s, screen)
    screened = labelled.attrs["screened"]
    labelled.attrs["label_seconds"] = time.time() - t0
    write_frames(out, labelled)
    n_failed = int((labelled.status == "failed").sum())
    log.info("labelled %d frames with %s in %.1f s, %d failed, %d screened", len(labelled), labeller.name,
             time.time() - t0, n_failed, len(screened))
    return labelled


def merge_step(data_path, labelled_paths: Sequence, iteration: int, out, out_info) -> dict:
    """Append the labelled frames to the data set; drop failed labels and duplicates."""
    base = read_frames(data_path)
    new_parts = [read_frames(p) for p in labelled_paths]
    n_new = sum(len(p) for p in new_parts)
    n_failed = sum(int((p.status == "failed").sum()) for p in new_parts)
    n_screened = sum(int((p.status == STATUS_SCREENED).sum()) for p in new_parts)
    label_seconds = sum(float(p.attrs.get("label_seconds", 0.0)) for p in new_parts)
    merged, counts = merge_frames([base] + new_parts, only_ok=True)
    merged.attrs = {"iteration": iteration}
    write_frames(out, merged)
    info = {"iteration": iteration, "previous_frames": len(base), "labelled": n_new, "failed_labels": n_failed,
            "screened_labels": n_screened, "added": len(merged) - len(base), "total_frames": len(merged), "duplicates": counts["duplicates"],
            "label_seconds": label_seconds,
            "selected": int(sum(np.isin(p.source, ("al", "hal", "cogef", "soft-mode", "fragments", "cogef-branch")).sum() for p in new_parts)),
            "augmented": int(sum((p.source == "augment").sum() for p in new_parts)),
            "labeller_steps": int(sum((p.source == "cogef-steps").sum() for p in new_parts))}
    if n_new and n_failed + n_screened == n_new:
        log.warning("iteration %d: all %d labels failed or were screened out; the data set is unchanged",
                    iteration, n_new)
        info["all_labels_failed"] = True
    write_json(out_info, info)
    log.info("merge: %d + %d labelled (%d failed, %d screened) -> %d frames", len(base), n_new, n_failed,
             n_screened, len(merged))
    return info


