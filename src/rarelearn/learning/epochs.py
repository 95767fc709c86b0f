"""The fit loop both model families share (ANI, :mod:`rarelearn.learning.fit`; SchNet,
:mod:`rarelearn.learning.schnet_fit`): the run-setting checks, device and thread helpers,
the per-epoch bookkeeping (best parameters, learning-rate schedule, stop rules, progress
lines), the epoch loop with its optional learning-rate warm-up, and the summary a fit
reports."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict
from typing import Any, Callable

import numpy as np
import torch

from ..dataset import Frames
from ..frameset import FrameSet


def _check_run_settings(cfg) -> None:
    """The checks of the run settings both families' training configs share."""
    if cfg.epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {cfg.epochs}")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if not 0.0 < cfg.train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {cfg.train_fraction}")
    if cfg.lr_warmup_epochs < 0:
        raise ValueError(f"lr_warmup_epochs must be >= 0, got {cfg.lr_warmup_epochs}")


# ---------------------------------------------------------------------- helpers
def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _ok_indices(frames: Frames | FrameSet, idx, log: Callable, what: str) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= len(frames)):
        raise IndexError(f"{what} indices out of range for {len(frames)} frames")
    ok = frames.ok[idx]
    if not ok.all():
        log(f"skipping {int((~ok).sum())} {what} frame(s) that are not labelled ok")
    return idx[ok]


def _state_copy(nets) -> dict:
    return {k: v.detach().clone() for k, v in nets.state_dict().items()}


class _EpochRecorder:
    """The per-epoch bookkeeping both model families share: the history lists, the best
    parameters so far (lowest ``ev[criterion]`` on the selection set), the progress line,
    the learning-rate schedule and the stop rules (early stopping, minimum learning rate).

    ``start`` is the selection set's evaluation of a warm start's parameters (None: a cold
    start), logged as epoch 0 so that what the first epochs do to it shows, and kept in the
    history (``start_<criterion>``, ``best_beats_start``).
    It is never a candidate for the kept parameters: those are the best *trained* epoch's.
    A warm-started member has seen all but the iteration's new frames, so its start reads
    well on a validation set of mostly old frames, and fresh Adam's first steps throw it off
    (benchmarks/README.md, "Half the MD set, and what a warm start keeps"): as a candidate,
    the start beat every trained epoch of whole fits and the member came back unchanged, its
    iteration's labels unlearned ("A warm start kept is a member frozen").
    """

    def __init__(self, nets, cfg, seed: int, select_on: str, criterion: str, log: Callable,
                 name: str = "", start: dict | None = None):
        self.cfg, self.seed, self.select_on, self.criterion, self.log = cfg, int(seed), select_on, criterion, log
        self.name = f"{name} " if name else ""
        self.hist: dict[str, Any] = {"epoch_train_loss": [], "epoch_val_loss": [], "epoch_val_energy_mse": [],
                                     "epoch_val_energy_mae": [], "epoch_lr": []}
        self.best, self.best_epoch, self.best_state = math.inf, 0, _state_copy(nets)
        self.start = start
        if start is not None:
            self.hist[f"start_{criterion}"] = float(start[criterion])
            log(f"{self.name}seed {self.seed} epoch 0 (warm start): {self._figures(start)}")
        self.every = max(1, int(round(cfg.epochs * cfg.log_every))) if cfg.log_every > 0 else 0
        self.stop_reason, self.epochs_run = "epochs", 0
        self.t_train = time.perf_counter()

    def end_epoch(self, epoch: int, nets, train_loss: float, ev: dict, opt, sched) -> bool:
        """Record epoch ``epoch`` (``ev``: the selection set's evaluation); True: stop training."""
        cfg, val = self.cfg, self.select_on == "val"
        lr = opt.param_groups[0]["lr"]
        nan = float("nan")
        self.hist["epoch_train_loss"].append(train_loss)
        self.hist["epoch_val_loss"].append(ev["loss"] if val else nan)
        self.hist["epoch_val_energy_mse"].append(ev["energy_mse"] if val else nan)
        self.hist["epoch_val_energy_mae"].append(ev["energy_mae"] if val else nan)
        self.hist["epoch_lr"].append(lr)
        self.epochs_run = epoch
        if ev[self.criterion] < self.best:
            self.best, self.best_epoch, self.best_state = ev[self.criterion], epoch, _state_copy(nets)
        if self.every and (epoch % self.every == 0 or epoch == 1 or epoch == cfg.epochs):
            spe = (time.perf_counter() - self.t_train) / epoch
            self.log(f"{self.name}seed {self.seed} epoch {epoch}/{cfg.epochs}: train loss {train_loss:.4g}, "
                     f"{self._figures(ev)}, best epoch {self.best_epoch}, lr {lr:.2g}, {spe:.2f} s/epoch")
        if sched is not None:
            # the same figure that keeps the parameters and stops early (ANI: the validation
            # energy MSE, as torchani's training example): a schedule on the whole loss can
            # hold the rate while the energy jumps, and early stopping then puts back an early
            # epoch (benchmarks/README.md, "Within 2,500 labels")
            sched.step(ev[self.criterion])
        if cfg.early_stopping_patience is not None and epoch - self.best_epoch >= cfg.early_stopping_patience:
            self.stop_reason = "early stopping"
            self.log(f"{self.name}seed {self.seed}: early stop at epoch {epoch} (best {self.best_epoch})")
            return True
        if cfg.stop_at_min_lr and sched is not None and opt.param_groups[0]["lr"] <= cfg.min_lr * (1 + 1e-9):
            self.stop_reason = "minimum learning rate"
            self.log(f"{self.name}seed {self.seed}: learning rate at its minimum, stop at epoch {epoch}")
            return True
        return False

    def _figures(self, ev: dict) -> str:
        return (f"{self.select_on} loss {ev['loss']:.4g}, {self.select_on} E MAE "
                f"{ev['energy_mae'] * 1000:.2f} meV, F MAE {ev['force_mae']:.4f} eV/Å")

    @property
    def train_seconds(self) -> float:
        return time.perf_counter() - self.t_train


def run_epochs(net, rec: _EpochRecorder, cfg, opt, sched, gen: torch.Generator, tr_rows: torch.Tensor,
               device: torch.device, batch_loss: Callable, evaluate_selection: Callable) -> None:
    """The fit loop both families share: up to ``cfg.epochs`` passes over the training rows,
    shuffled with ``gen``, in batches of ``cfg.batch_size`` (``batch_loss(rows)`` -> loss
    tensor, one optimiser step each); after every epoch ``rec`` records
    ``evaluate_selection()`` and says whether to stop. ``cfg.lr_warmup_epochs`` > 0: the
    learning rate climbs linearly over the steps of those first
    epochs to its set value. Ends with the recorded best parameters loaded and ``net`` in
    eval mode."""
    n_tr = int(tr_rows.shape[0])
    warm_steps = int(cfg.lr_warmup_epochs) * math.ceil(n_tr / cfg.batch_size)
    base_lr = [g["lr"] for g in opt.param_groups]
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        order = tr_rows[torch.randperm(n_tr, generator=gen).to(device)]
        s_loss = 0.0
        for start in range(0, n_tr, cfg.batch_size):
            rows = order[start:start + cfg.batch_size]
            loss = batch_loss(rows)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if step < warm_steps:
                for g, lr in zip(opt.param_groups, base_lr):
                    g["lr"] = lr * (step + 1) / warm_steps
            step += 1
            opt.step()
            s_loss += float(loss.detach()) * rows.shape[0]
        net.eval()
        if rec.end_epoch(epoch, net, s_loss / n_tr, evaluate_selection(), opt, sched):
            break
    net.load_state_dict(rec.best_state)
    net.eval()


def fit_summary(rec: _EpochRecorder, ev_tr: dict, ev_va: dict, train_seconds: float, seed: int, device,
                t0: float, init_state: dict | None, cfg) -> dict:
    """The history entries both families report after a fit: the best epoch and why training
    stopped, errors of the kept parameters on the training and validation rows (``ev_tr``,
    ``ev_va``: their evaluations; eV, eV/Å), sizes, seed, device, timings, the config."""
    return {
        "best_epoch": rec.best_epoch,
        "best_beats_start": (None if rec.start is None or rec.epochs_run == 0
                             else bool(rec.best < rec.start[rec.criterion])),
        "selected_on": rec.select_on,
        "train_energy_mae": ev_tr["energy_mae"], "train_force_mae": ev_tr["force_mae"],
        "train_energy_rmse": math.sqrt(ev_tr["energy_mse"]),
        "val_energy_mae": ev_va["energy_mae"], "val_force_mae": ev_va["force_mae"],
        "val_energy_rmse": math.sqrt(ev_va["energy_mse"]) if ev_va["n"] else float("nan"),
        "n_train": int(ev_tr["n"]), "n_val": int(ev_va["n"]), "epochs_run": rec.epochs_run,
        "stop_reason": rec.stop_reason, "seed": int(seed), "device": str(device),
        "seconds_per_epoch": train_seconds / max(rec.epochs_run, 1),
        "seconds": time.perf_counter() - t0,
        "warm_start": init_state is not None, "config": asdict(cfg),
    }
