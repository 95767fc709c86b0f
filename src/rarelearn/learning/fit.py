"""Training ANI members on energies and forces (eq. 3 of the paper): the shared fit loop.

Loss (eq. 3), computed in eV and eV/Å for a batch of B frames of N atoms::

    L = 1/B Σ_b (E_b − E_b^ref)² / √N  +  α · 1/B Σ_b Σ_{i,c} (F_bic − F_bic^ref)² / N

i.e. the per-frame squared energy error divided by √N_atoms, plus α (``force_weight``,
0.1) times the per-frame sum over atoms and Cartesian components of the squared force
error divided by N_atoms, both averaged over the frames of the batch. The validation
loss is the same expression averaged over the validation frames. The parameters kept
are those of the epoch with the lowest validation **energy** MSE, mean (E − E^ref)² in
eV² (not divided by √N).

Optimiser: Adam (``torch.optim.Adam``, lr 1e-3) -- AdamW with decoupled weight decay
when ``TrainConfig.weight_decay > 0``; optionally ``ReduceLROnPlateau`` on the
same validation energy MSE (``lr_patience``).

Speed: how forces are trained
-----------------------------
Forces are −∂E/∂x. With AEVs a(x), ∂E/∂x = Σ_i (∂E/∂a_i) · (∂a_i/∂x). The AEVs and their
Jacobians ∂a/∂x depend on the data only, not on the network parameters, so by default
(``precompute="auto"``) they are computed once per training set (forward-mode autograd
through TorchANI's own radial/angular terms, checked against TorchANI's AEVs) and each
step only runs the element networks and one batched matrix product: the same
numbers as differentiating through the AEV every step (exact, not an approximation),
about 4-5x faster on a CPU. Memory: 4·N·D·3N bytes per frame (0.6 MB for hexane,
D = 128); above ``max_cache_gb`` or with ``precompute="none"`` AEVs are recomputed and
differentiated every step.

Several molecules: ``frames`` may be a :class:`rarelearn.frameset.FrameSet` (one part per
molecule; indices are global frame indices into it). Each part keeps its own cache and
atom order; a batch spanning several parts is split by part and the parts' eq.-3 losses
(each with its own √N and N) are weighted by their frame counts, so the loss is still
the mean over the batch's frames (:class:`rarelearn.learning.aev_data._MultiData`). The
training rows are shuffled as one set, one global permutation per epoch. Plain
:class:`Frames` take exactly the one-molecule path.

Determinism: weights are initialised inside ``torch.random.fork_rng`` seeded with
``seed`` (the global RNG is left alone) and batches are shuffled with a
``torch.Generator`` seeded with ``seed``: same seed, data, config and thread count on
a CPU give bit-identical parameters (CUDA ``index_add`` may not be bit-reproducible).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

import numpy as np
import torch

from ..dataset import Frames
from ..frameset import FrameSet
from ..models.ani import build_networks
from ..models.committee import ModelError
from .aev_data import AUTO_MIN_EPOCHS, _Data, _MultiData, make_data
from .epochs import _check_run_settings, _device, _EpochRecorder, _ok_indices, _threads, fit_summary, run_epochs

__all__ = [
    "AUTO_MIN_EPOCHS",
    "TrainConfig",
    "train_member",
    "train_ensemble_fused",
]




@dataclass
class TrainConfig:
    """Training settings (defaults: docs/method.md / the paper).

    Attributes
    ----------
    epochs : passes over the training frames (300)
    batch_size : frames per step (64), shuffled every epoch
    lr : learning rate of Adam (1e-3)
    force_weight : α of eq. 3 (0.1)
    train_fraction : share of frames used for training in a random split (0.8)
    early_stopping_patience : stop after this many epochs without a better validation
        energy MSE (None: never)
    lr_factor, lr_patience, min_lr : ReduceLROnPlateau on the validation energy MSE (the
        figure early stopping and the kept parameters follow) when ``lr_patience`` is set
        (factor 0.5, floor 1e-6)
    stop_at_min_lr : stop once the learning rate has reached ``min_lr``
    weight_decay : > 0 switches to AdamW with this decoupled weight decay
    device : "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    threads : torch CPU threads during training (None: leave as is)
    precompute : "auto" | "jacobian" | "none" -- see the module docstring
    max_cache_gb : memory limit of the AEV/Jacobian cache for "auto"
    eval_batch_size : frames per evaluation chunk
    log_every : fraction of the epochs between progress lines (0.1)
    lr_warmup_epochs : the learning rate rises linearly from ``lr``/steps to ``lr`` over the
        optimiser steps of this many first epochs (0: none). A fresh Adam's first steps move
        every weight by about ``lr`` whatever its gradient's size, which throws a
        warm-started member far from what it had learned (benchmarks/README.md, "Half the
        MD set, and what a warm start keeps")
    """

    epochs: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    force_weight: float = 0.1
    train_fraction: float = 0.8
    early_stopping_patience: int | None = None
    lr_factor: float = 0.5
    lr_patience: int | None = None
    min_lr: float = 1e-6
    stop_at_min_lr: bool = False
    weight_decay: float = 0.0
    device: str = "auto"
    threads: int | None = None
    precompute: str = "auto"
    max_cache_gb: float = 4.0
    eval_batch_size: int = 256
    log_every: float = 0.1
    lr_warmup_epochs: int = 0

    def __post_init__(self) -> None:
        _check_run_settings(self)
        if self.force_weight < 0:
            raise ValueError(f"force_weight must be >= 0, got {self.force_weight}")
        if self.precompute not in ("auto", "jacobian", "none"):
            raise ValueError(f"precompute must be 'auto', 'jacobian' or 'none', got {self.precompute!r}")


def _fit(data: _Data | _MultiData, train_idx: np.ndarray, val_idx: np.ndarray, cfg: TrainConfig, seed: int,
         init_state: dict | None, log: Callable) -> tuple[dict, dict]:
    t0 = time.perf_counter()
    if len(train_idx) == 0:
        raise ValueError("no usable training frames")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        nets = build_networks(data.spec, data.aev_dim)
    if init_state is not None:
        try:
            nets.load_state_dict(init_state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise ModelError("the warm start's parameters do not fit this model (a committee in training.start_from "
                             "must have the campaign's elements and model.hidden sizes): "
                             f"{' '.join(line.strip() for line in first[:3])}") from None
    nets.to(data.device)
    tr_rows = data.local(train_idx)
    va_rows = data.local(val_idx)
    alpha = float(cfg.force_weight)
    if cfg.weight_decay > 0:
        opt = torch.optim.AdamW(nets.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(nets.parameters(), lr=cfg.lr)
    sched = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor,
                                                        patience=cfg.lr_patience, min_lr=cfg.min_lr)
             if cfg.lr_patience is not None else None)
    gen = torch.Generator().manual_seed(int(seed))
    select_on = "val" if len(va_rows) else "train"
    if select_on == "train":
        log("no validation frames: keeping the parameters with the lowest training energy MSE")
    sel_rows = va_rows if select_on == "val" else tr_rows
    ev0 = None
    if init_state is not None:      # a warm start's own figure is epoch 0
        nets.eval()
        ev0 = data.evaluate(nets, sel_rows, alpha, cfg.eval_batch_size)
    rec = _EpochRecorder(nets, cfg, seed, select_on, "energy_mse", log, start=ev0)
    run_epochs(nets, rec, cfg, opt, sched, gen, tr_rows, data.device,
               batch_loss=lambda rows: data.batch_loss(nets, rows, alpha),
               evaluate_selection=lambda: data.evaluate(nets, sel_rows, alpha, cfg.eval_batch_size))
    train_seconds = rec.train_seconds
    ev_tr = data.evaluate(nets, tr_rows, alpha, cfg.eval_batch_size)
    ev_va = data.evaluate(nets, va_rows, alpha, cfg.eval_batch_size)
    hist = rec.hist
    hist.update({
        "best_val_energy_mse": rec.best if select_on == "val" else float("nan"),
        **fit_summary(rec, ev_tr, ev_va, train_seconds, seed, data.device, t0, init_state, cfg),
        "precompute": data.mode, "precompute_seconds": data.seconds,
    })
    state = {k: v.detach().cpu().clone() for k, v in rec.best_state.items()}
    return state, hist


# ---------------------------------------------------------------------- public training
def train_member(frames: Frames | FrameSet, train_idx, val_idx, spec: dict, cfg: TrainConfig | None = None,
                 seed: int = 0, init_state: dict | None = None,
                 log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Train one member on energies and forces (eq. 3).

    Parameters
    ----------
    frames : the whole data set: one molecule (:class:`Frames`) or several
        (:class:`FrameSet`); only frames with ``frames.ok`` are used
    train_idx, val_idx : frame indices into ``frames`` (global indices of a FrameSet;
        non-ok frames are skipped)
    spec : model spec (:func:`rarelearn.models.ani.make_spec`; self energies in eV)
    cfg : :class:`TrainConfig`
    seed : initial weights and shuffling (same seed → same parameters, on a CPU)
    init_state : member state dict to start from (warm start) instead of random weights
    log : called with a progress line about every ``cfg.log_every`` of the epochs

    Returns
    -------
    state : ``ANINetworks`` state dict (CPU tensors) of the epoch with the lowest
        validation energy MSE (the lowest training energy MSE if there is no validation frame)
    history : dict (JSON-serialisable)
        per epoch: ``epoch_train_loss``, ``epoch_val_loss`` (eq. 3), ``epoch_val_energy_mse``
        (eV²), ``epoch_val_energy_mae`` (eV), ``epoch_lr``; for the kept parameters:
        ``best_epoch``, ``best_val_energy_mse``, ``train_energy_mae``, ``val_energy_mae``
        (eV), ``train_force_mae``, ``val_force_mae`` (eV/Å, per component),
        ``train_energy_rmse``, ``val_energy_rmse``; and ``n_train``, ``n_val``,
        ``epochs_run``, ``stop_reason``, ``seconds``, ``seconds_per_epoch``,
        ``precompute`` ("jacobian" or "none"), ``precompute_seconds``, ``seed``, ``config``.
    """
    cfg = cfg or TrainConfig()
    tr = _ok_indices(frames, train_idx, log, "training")
    va = _ok_indices(frames, val_idx, log, "validation")
    if len(tr) == 0:
        raise ValueError("no usable (status ok, finite labels) training frames")
    with _threads(cfg.threads):
        rows = np.unique(np.concatenate([tr, va]))
        data = make_data(frames, rows, spec, _device(cfg.device), cfg.precompute, cfg.max_cache_gb, log=log,
                         epochs=cfg.epochs)
        return _fit(data, tr, va, cfg, seed, init_state, log)


def train_ensemble_fused(frames: Frames | FrameSet, splits: Sequence[tuple], spec: dict, cfg: TrainConfig | None = None,
                         seeds: Sequence[int] = (), init_states: Sequence[dict | None] | None = None,
                         log: Callable[[str], None] = print) -> list[tuple[dict, dict]]:
    """Train K members sharing one AEV (and AEV-Jacobian) computation.

    The AEVs/Jacobians of the union of all members' frames are computed once; each member
    then trains exactly as :func:`train_member` on its own split, seed and warm start.

    Parameters
    ----------
    frames : one molecule (:class:`Frames`) or several (:class:`FrameSet`)
    splits : K pairs (train_idx, val_idx) of frame indices (global ones for a FrameSet)
    seeds : K seeds
    init_states : K member state dicts or None

    Returns
    -------
    list of K (state, history) pairs, as :func:`train_member` returns.
    """
    cfg = cfg or TrainConfig()
    if len(seeds) != len(splits):
        raise ValueError(f"{len(splits)} splits but {len(seeds)} seeds")
    init_states = list(init_states) if init_states is not None else [None] * len(splits)
    if len(init_states) != len(splits):
        raise ValueError(f"{len(splits)} splits but {len(init_states)} initial states")
    clean = [(_ok_indices(frames, t, log, "training"), _ok_indices(frames, v, log, "validation"))
             for t, v in splits]
    out = []
    with _threads(cfg.threads):
        rows = np.unique(np.concatenate([np.concatenate([t, v]) for t, v in clean]))
        data = make_data(frames, rows, spec, _device(cfg.device), cfg.precompute, cfg.max_cache_gb, log=log,
                         epochs=cfg.epochs * len(splits))
        log(f"shared AEV cache ({data.mode}) for {len(rows)} frames in {data.seconds:.1f} s")
        for (t, v), seed, init in zip(clean, seeds, init_states):
            state, hist = _fit(data, t, v, cfg, seed, init, log)
            hist["shared_precompute"] = True
            out.append((state, hist))
    return out


