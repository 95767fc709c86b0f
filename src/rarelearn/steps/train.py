"""Training steps: iteration 0's data set, one member or a whole iteration's members,
and the best member (policy: :mod:`rarelearn.learning.members`).

Several molecules: ``data_path``, ``base_data_path`` and ``atom_energies_json`` may each
be one path or a list of paths (one data set file per molecule, read as a
:class:`rarelearn.frameset.FrameSet`; the atom-energy files merged). One path, or a list
of one, trains exactly as before."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..dataset import Frames, merge_frames, read_frames, write_frames
from ..frameset import FrameSet, read_training_frames
from ..jsonio import read_json, write_json
from ..learning.members import fitted_self_energies, member_setup, model_spec, train_config
from .common import log

__all__ = ["initial_dataset", "read_atom_energies", "train_member_step", "train_ensemble_step",
           "best_model_step", "median_cogef_step"]


def initial_dataset(md_path, out, data=None) -> None:
    """Iteration 0 trains on the usable frames of the reference MD set, and of the labelled
    data file ``data`` (:func:`start_data`) where the molecule's entry gives one."""
    frames = read_frames(md_path)
    ok = frames.subset(frames.ok)
    log.info("iteration 0 data set: %d of %d MD frames usable", len(ok), len(frames))
    if data is not None:
        ok = merge_frames([ok, start_data(data, ok.numbers)])[0]
    write_frames(out, ok)


def start_data(path, numbers) -> Frames:
    """The usable frames of a labelled data file a molecule starts from (``molecules[i].data``),
    checked to hold this molecule's atoms in its order; a ValueError naming the file if not."""
    frames = read_frames(path)
    if not np.array_equal(np.asarray(frames.numbers), np.asarray(numbers)):
        raise ValueError(f"data file {path}: its atoms (numbers {list(map(int, frames.numbers))}) are not the "
                         f"molecule's in its order ({list(map(int, numbers))}); give a data set of this molecule, "
                         "e.g. a campaign's merged.h5 on the same molecule")
    ok = frames.subset(frames.ok)
    log.info("iteration 0 data set: %d of %d frames usable from %s", len(ok), len(frames), path)
    return ok


def _write_member(frames: Frames | FrameSet, spec: dict, setup: dict, iteration: int, state: dict, history: dict,
                  out_model, out_info) -> dict:
    from ..models.files import save_model

    member, seed = setup["member"], setup["seed"]
    save_model(out_model, [state], spec, meta={"iteration": iteration, "member": member, "seed": seed})
    hashes = frames.hashes
    info = {"iteration": iteration, "member": member, "seed": seed, "split": setup["split"],
            "train_hashes": [str(h) for h in hashes[np.asarray(setup["train_idx"], dtype=int)]],
            "val_hashes": [str(h) for h in hashes[np.asarray(setup["val_idx"], dtype=int)]],
            "history": history}
    write_json(out_info, info)
    return info


def _paths(paths) -> list:
    """One path or a list of paths, as a list."""
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def read_atom_energies(paths) -> dict:
    """Isolated-atom energies (eV) per element of one or several atom-energy files, merged;
    files that share an element must agree on it within 1e-6 eV (ValueError otherwise)."""
    merged: dict[str, tuple[float, object]] = {}
    for path in _paths(paths):
        for el, value in read_json(path)["energies"].items():
            value = float(value)
            if el in merged and abs(merged[el][0] - value) > 1e-6:
                raise ValueError(f"atom energy of {el} differs between {merged[el][1]} ({merged[el][0]!r} eV) "
                                 f"and {path} ({value!r} eV)")
            merged.setdefault(el, (value, path))
    return {el: v for el, (v, _) in merged.items()}


def _training_frames(data_path, model_cfg: dict) -> Frames | FrameSet:
    """The frames a training job learns (one data set file, or a list: several molecules)."""
    frames = read_training_frames(data_path)
    if model_cfg.get("family", "ani") == "schnet" and isinstance(frames, FrameSet):
        raise ValueError(f"SchNet training takes one molecule; got {len(frames.parts)} data set files "
                         f"({', '.join(str(p) for p in data_path)}): use model.family 'ani' for several")
    return frames


def _training_spec(frames: Frames | FrameSet, atom_energies_json, model_cfg: dict, elements: Sequence[str],
                   base_data_path=None, start_self_energies: dict | None = None) -> dict:
    """The members' model spec. Its self energies are those of the committee the members go on
    from (``start_self_energies``, :func:`member_setup`'s ``init_self_energies``, where it has
    every element), so its networks' energies keep their meaning; else fitted on iteration 0's
    data (``base_data_path``). Within a campaign the two are the same numbers."""
    atom_e = read_atom_energies(atom_energies_json)
    if start_self_energies and all(e in start_self_energies for e in elements):
        return model_spec(model_cfg, elements, {e: float(start_self_energies[e]) for e in elements})
    base = frames if base_data_path is None else read_training_frames(base_data_path)
    return model_spec(model_cfg, elements, fitted_self_energies(atom_e, base))


def train_member_step(data_path, atom_energies_json, model_cfg: dict, training_cfg: dict,
                      elements: Sequence[str], iteration: int, member: int, out_model, out_info,
                      previous_dir=None, base_data_path=None) -> dict:
    """Train ensemble member ``member`` of iteration ``iteration``; write its model and split.

    Self energies are fitted on ``base_data_path`` (iteration 0's data set), so they are the
    same in every iteration. ``data_path``, ``base_data_path``, ``atom_energies_json``: one
    path or a list (several molecules, one committee; split over all their frames)."""
    from ..learning.schnet_fit import train_schnet_member
    from ..learning.fit import train_member

    frames = _training_frames(data_path, model_cfg)
    setup = member_setup(frames, training_cfg, iteration, member, previous_dir)
    spec = _training_spec(frames, atom_energies_json, model_cfg, elements, base_data_path,
                          setup["init_self_energies"])
    train = train_schnet_member if spec.get("family") == "schnet" else train_member
    state, history = train(frames, setup["train_idx"], setup["val_idx"], spec, train_config(training_cfg),
                           seed=setup["seed"], init_state=setup["init_state"], log=log.info)
    return _write_member(frames, spec, setup, iteration, state, history, out_model, out_info)


def train_ensemble_step(data_path, atom_energies_json, model_cfg: dict, training_cfg: dict,
                        elements: Sequence[str], iteration: int, out_models: Sequence, out_infos: Sequence,
                        previous_dir=None, base_data_path=None) -> list[dict]:
    """Train every member of an iteration in one job (``training.fused``).

    ANI members share one AEV/Jacobian computation (:func:`training.train_ensemble_fused`);
    each still has its own seed, split and warm start, exactly as in
    :func:`train_member_step`, and the files written are the same (paths: one or a list, as
    there). SchNet members are trained one after the other in this job."""
    from ..learning.schnet_fit import train_schnet_member
    from ..learning.fit import train_ensemble_fused

    if len(out_models) != len(out_infos):
        raise ValueError(f"{len(out_models)} model files but {len(out_infos)} info files")
    frames = _training_frames(data_path, model_cfg)
    setups = [member_setup(frames, training_cfg, iteration, k, previous_dir)
              for k in range(len(out_models))]
    spec = _training_spec(frames, atom_energies_json, model_cfg, elements, base_data_path,
                          setups[0]["init_self_energies"])
    cfg = train_config(training_cfg)
    if spec.get("family") == "schnet":
        results = [train_schnet_member(frames, s["train_idx"], s["val_idx"], spec, cfg, seed=s["seed"],
                                       init_state=s["init_state"], log=log.info) for s in setups]
    else:
        results = train_ensemble_fused(frames, [(s["train_idx"], s["val_idx"]) for s in setups], spec, cfg,
                                       seeds=[s["seed"] for s in setups],
                                       init_states=[s["init_state"] for s in setups], log=log.info)
    return [_write_member(frames, spec, s, iteration, state, hist, m, i)
            for s, (state, hist), m, i in zip(setups, results, out_models, out_infos)]


def best_model_step(data_path, member_paths: Sequence, out_ensemble, out_best) -> dict:
    """Join the members into one ensemble file; the best member has the lowest force MAE
    over the whole data set (train + validation); ``data_path``: one path or a list (the
    force MAE then over every component of all the files' usable frames)."""
    from ..models.files import read_model_blob
    from ..models.files import load_model, save_model
    from ..learning.errors import best_member

    states, spec = [], None
    for p in member_paths:
        blob = read_model_blob(p)
        spec = blob["spec"]
        states.extend(blob["members"])
    save_model(out_ensemble, states, spec, meta={"members": [str(p) for p in member_paths]})
    ens = load_model(out_ensemble)
    frames = read_training_frames(data_path)
    k, maes = best_member(ens, frames)
    rec = {"best_member": int(k), "rule": "validation", "force_mae": [float(m) for m in maes], "unit": "eV/Å"}
    write_json(out_best, rec)
    log.info("best member %d (force MAE %s eV/Å)", k, ", ".join(f"{m:.4f}" for m in maes))
    return rec


def median_cogef_step(validation_json, profiles: dict, out_best) -> dict:
    """``model.best_member: cogef_median``: the best member is the one whose own COGEF
    maximum is the committee's median (:func:`rarelearn.learning.errors.median_cogef_member`),
    over the trained molecules; ``validation_json`` is the force-error record of rule
    best_model (the tie-break, and kept in the record as ``validation_best``).

    ``profiles``: molecule name -> the members' COGEF profile files (member order).
    """
    from ..learning.errors import median_cogef_member

    val = read_json(validation_json)
    maes = [float(m) for m in val["force_mae"]]
    names = list(profiles)
    recs = {name: [read_json(p) for p in profiles[name]] for name in names}
    for name, rows in recs.items():
        if len(rows) != len(maes):
            raise ValueError(f"{name}: {len(rows)} member COGEF profiles for {len(maes)} members")
    e_max = [[float(r["e_max"]) for r in recs[n]] for n in names]
    broke = [[bool(r["broke"]) for r in recs[n]] for n in names]
    k, distance = median_cogef_member(e_max, broke, maes)
    rec = {"best_member": k, "rule": "cogef_median", "validation_best": int(val["best_member"]),
           "force_mae": maes, "unit": "eV/Å", "rank_distance": distance,
           "cogef_e_max": {n: [e if b else None for e, b in zip(es, bs)] for n, es, bs in zip(names, e_max, broke)}}
    write_json(out_best, rec)
    log.info("best member %d: the committee's median COGEF maximum (by force error: member %d; rank "
             "distances %s)", k, rec["validation_best"], ", ".join(f"{d:g}" for d in distance))
    return rec
