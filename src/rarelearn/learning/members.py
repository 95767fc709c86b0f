"""How the members of an iteration are set up: self energies, model spec, training config,
seeds, train/validation split (random or inherited) and warm start (paper 2.3.6).

Shared by the per-member and the fused training steps, so both train the same members.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..dataset import Frames
from ..frameset import FrameSet
from ..jsonio import read_json
from ..models.files import read_model_blob
from .fit import TrainConfig
from .splits import inherited_split, random_split, seed_for

__all__ = ["fitted_self_energies", "model_spec", "train_config", "member_setup"]

log = logging.getLogger("rarelearn")


def fitted_self_energies(atom_energies: dict, frames: Frames | FrameSet) -> dict:
    """Self energies per element (eV): the labeller's isolated-atom energies plus one common
    per-atom shift that makes the mean residual energy of ``frames`` zero.

    The isolated atoms alone leave the whole atomisation energy (tens of eV) for the networks
    to learn; a single composition cannot separate H from C by a linear fit, so the shift is
    shared by all atoms. For a :class:`FrameSet` (several molecules) the shift is
    Σ_f (E_f − Σ_i e_i) / Σ_f N_f over the usable frames of all parts (e_i: the isolated
    atoms' energies), still one number for every element.
    """
    if isinstance(frames, FrameSet):
        residual = atoms = 0.0
        for part in frames.parts:
            ok = part.ok
            residual += float(np.sum(part.energy[ok] - _atoms_energy(atom_energies, part.numbers)))
            atoms += float(part.n_atoms * ok.sum())
        shift = residual / atoms if atoms else 0.0
    else:
        ok = frames.ok
        base = _atoms_energy(atom_energies, frames.numbers)
        shift = float(np.mean(frames.energy[ok]) - base) / frames.n_atoms if ok.any() else 0.0
    return {e: float(v) + shift for e, v in atom_energies.items()}


def _atoms_energy(atom_energies: dict, numbers) -> float:
    """Sum of the isolated-atom energies of the atoms ``numbers`` (eV)."""
    return sum(float(atom_energies[_symbol(z)]) for z in numbers)


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]


def model_spec(model_cfg: dict, elements: Sequence[str], self_energies: dict) -> dict:
    if model_cfg.get("family", "ani") == "schnet":
        from ..models.schnet import make_schnet_spec

        return make_schnet_spec(list(elements), {e: float(self_energies[e]) for e in elements})
    return {"elements": list(elements),
            "hidden": {e: list(model_cfg["hidden"][e]) for e in elements},
            "self_energies": {e: float(self_energies[e]) for e in elements},
            "activation": "gelu"}


def train_config(training_cfg: dict):
    keys = ("epochs", "batch_size", "lr", "force_weight", "train_fraction",
            "early_stopping_patience", "lr_patience")
    optional = {"lr_warmup_epochs": 0}     # keys later than the training dicts some callers build
    return TrainConfig(**{k: training_cfg[k] for k in keys},
                       **{k: training_cfg.get(k, v) for k, v in optional.items()})


def member_setup(frames: Frames | FrameSet, training_cfg: dict, iteration: int, member: int,
                  previous_dir=None) -> dict:
    """Seed, train/validation split and warm-start state of one member (shared by the
    per-member and the fused training steps, so both train the same members), with the self
    energies of the committee it starts from (``init_self_energies``; None without a warm
    start). With a :class:`FrameSet` the split is over its global frame indices."""
    cfg = train_config(training_cfg)
    seed = seed_for(iteration, member) + int(training_cfg.get("seed", 0))
    init_state = init_self_energies = None
    split_kind = "random"
    if previous_dir is not None:    # the iteration before, or at iteration 0 training.start_from
        prev = Path(previous_dir)
        if training_cfg["split"] == "inherited":
            best = int(read_json(prev / "best.json")["best_member"])
            pinfo = read_json(prev / "models" / f"member_{best}.json")
            train_idx, val_idx = inherited_split(pinfo["train_hashes"], pinfo["val_hashes"], frames.hashes,
                                                 seed, cfg.train_fraction)
            source = f"iteration {iteration - 1}" if iteration > 0 else str(prev)
            split_kind = f"inherited from {source} member {best}"
        if training_cfg["warm_start"]:
            blob = read_model_blob(prev / "models" / f"member_{member}.pt")
            init_state = blob["members"][0]
            init_self_energies = blob["spec"].get("self_energies")
    if split_kind == "random":
        train_idx, val_idx = random_split(len(frames), seed, cfg.train_fraction)
    log.info("iteration %d member %d: %d frames, split %s (%d train / %d val), seed %d", iteration, member,
             len(frames), split_kind, len(train_idx), len(val_idx), seed)
    return {"member": member, "seed": seed, "split": split_kind, "train_idx": train_idx, "val_idx": val_idx,
            "init_state": init_state, "init_self_energies": init_self_energies}


