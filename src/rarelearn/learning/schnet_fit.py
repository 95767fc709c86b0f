"""Training SchNet members (the paper's 2.3.5 recipe, eq. 4).

``L = ρ · MSE(E) + (1 − ρ) · MSE(F)`` with ρ = 0.1, MSE(E) the mean squared energy error
per frame (eV²) and MSE(F) the mean squared force error per Cartesian component
((eV/Å)²). Adam (lr 5e-4), ``ReduceLROnPlateau`` on the validation loss (factor 0.8,
patience 5, min lr 1e-6); training stops when the learning rate reaches its minimum or
after ``epochs``; the parameters kept are those of the epoch with the lowest validation
loss. See :class:`SchNetTrainConfig` and :func:`train_schnet_member`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np
import torch
from ase.data import chemical_symbols as _SYMBOLS

from ..dataset import Frames
from ..models.schnet import FAMILY, RHO, CdistInteractionGraph, _complete_spec, _net_energy, build_schnet
from .epochs import _check_run_settings, _device, _EpochRecorder, _ok_indices, _threads, fit_summary, run_epochs

__all__ = ["SchNetTrainConfig", "train_schnet_member"]


@dataclass
class SchNetTrainConfig:
    """The paper's SchNet recipe (2.3.5); defaults are the paper's numbers.

    Attributes
    ----------
    epochs : at most this many passes over the training frames (300)
    batch_size : frames per step (64; the paper does not give one), shuffled every epoch
    lr : initial learning rate of Adam (5e-4)
    rho : energy weight ρ of eq. 4 (0.1); the force weight is 1 − ρ
    lr_factor, lr_patience, min_lr : ReduceLROnPlateau on the validation loss (0.8, 5, 1e-6)
    stop_at_min_lr : stop once the learning rate has reached ``min_lr`` (True)
    early_stopping_patience : also stop after this many epochs without a better
        validation loss (None: never; not in the paper)
    train_fraction : share of frames for training in a random split (0.8)
    device : "auto" (cuda if available), "cpu", "cuda", ...
    threads : torch CPU threads during training (None: leave as is)
    eval_batch_size : frames per evaluation chunk
    log_every : fraction of the epochs between progress lines (0.1; 0: quiet)
    lr_warmup_epochs : linear warm-up of the learning rate over this many first epochs (0:
        none; not taken over from an ANI config, like the other ``lr_*`` settings)
    """

    epochs: int = 300
    batch_size: int = 64
    lr: float = 5e-4
    rho: float = RHO
    lr_factor: float = 0.8
    lr_patience: int = 5
    min_lr: float = 1e-6
    stop_at_min_lr: bool = True
    early_stopping_patience: int | None = None
    train_fraction: float = 0.8
    device: str = "auto"
    threads: int | None = None
    eval_batch_size: int = 256
    log_every: float = 0.1
    lr_warmup_epochs: int = 0

    def __post_init__(self) -> None:
        _check_run_settings(self)
        if not 0.0 <= self.rho <= 1.0:
            raise ValueError(f"rho must be in [0, 1], got {self.rho}")
        if not self.lr > 0 or not self.min_lr >= 0:
            raise ValueError(f"lr must be > 0 and min_lr >= 0, got {self.lr}, {self.min_lr}")
        if not 0.0 < self.lr_factor < 1.0:
            raise ValueError(f"lr_factor must be in (0, 1), got {self.lr_factor}")
        if self.lr_patience < 0:
            raise ValueError(f"lr_patience must be >= 0, got {self.lr_patience}")

    #: settings taken over from a :class:`rarelearn.learning.fit.TrainConfig`
    SHARED = ("epochs", "batch_size", "train_fraction", "early_stopping_patience", "device", "threads",
              "eval_batch_size", "log_every")

    @classmethod
    def from_train_config(cls, cfg, **overrides) -> "SchNetTrainConfig":
        """The SchNet recipe with the run settings (:attr:`SHARED`) of an ANI ``TrainConfig``.

        The ANI optimiser settings (``lr``, ``force_weight`` α of eq. 3, ``lr_*``) are
        not taken over: eq. 4 and the SchNet schedule differ. Pass ``overrides`` to change them.
        """
        names = {f.name for f in fields(cls)}
        kw = {k: getattr(cfg, k) for k in cls.SHARED if hasattr(cfg, k)}
        bad = set(overrides) - names
        if bad:
            raise TypeError(f"unknown SchNetTrainConfig field(s): {', '.join(sorted(bad))}")
        kw.update(overrides)
        return cls(**kw)


class _SchNetData:
    """Labelled frames on the device: positions, residual energies (reference minus the
    self energies, eV), forces; the loss of eq. 4 and chunked evaluation."""

    def __init__(self, frames: Frames, rows: np.ndarray, spec: dict, device: torch.device, rho: float) -> None:
        syms = [_SYMBOLS[int(z)] for z in frames.numbers]
        missing = sorted(set(syms) - set(spec["elements"]), key=syms.index)
        if missing:
            raise ValueError(f"model covers {', '.join(spec['elements'])}; structure has {', '.join(missing)}")
        shift = sum(spec["self_energies"][s] for s in syms)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.n = frames.n_atoms
        self.device = device
        self.rho = float(rho)
        self.z1 = torch.as_tensor(frames.numbers, dtype=torch.long, device=device)
        self.pos = torch.as_tensor(frames.positions[self.rows], dtype=torch.float32, device=device)
        self.energy = torch.as_tensor(frames.energy[self.rows] - shift, dtype=torch.float32, device=device)
        self.forces = torch.as_tensor(frames.forces[self.rows], dtype=torch.float32, device=device)
        self.graph = CdistInteractionGraph(spec["cutoff"])
        self._pos_of = {int(r): i for i, r in enumerate(self.rows)}

    def local(self, frame_idx: np.ndarray) -> torch.Tensor:
        return torch.as_tensor([self._pos_of[int(i)] for i in frame_idx], dtype=torch.long, device=self.device)

    def predict(self, net, rows: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies (B,) eV without self energies and forces (B, N, 3) eV/Å of cache rows."""
        b = int(rows.shape[0])
        x = self.pos.index_select(0, rows).requires_grad_(True)
        i, j, d = self.graph.half_edges(x)
        e = _net_energy(net, self.z1.repeat(b), i, j, d, b, self.n)
        g, = torch.autograd.grad(e.sum(), x, create_graph=create_graph)
        return e, -g

    def loss(self, e: torch.Tensor, f: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        de = e - self.energy.index_select(0, rows)
        df = f - self.forces.index_select(0, rows)
        return self.rho * (de * de).mean() + (1.0 - self.rho) * (df * df).mean()

    def evaluate(self, net, rows: torch.Tensor, chunk: int) -> dict:
        """Loss (eq. 4) and errors over ``rows`` (no parameter gradients)."""
        n = int(rows.shape[0])
        if n == 0:
            nan = float("nan")
            return {"loss": nan, "energy_mse": nan, "energy_mae": nan, "force_mse": nan, "force_mae": nan, "n": 0}
        s_se = s_ae = s_fse = s_fae = 0.0
        for start in range(0, n, chunk):
            r = rows[start:start + chunk]
            with torch.enable_grad():
                e, f = self.predict(net, r, create_graph=False)
            de = (e.detach() - self.energy.index_select(0, r)).double()
            df = (f.detach() - self.forces.index_select(0, r)).double()
            s_se += float((de ** 2).sum())
            s_ae += float(de.abs().sum())
            s_fse += float((df ** 2).mean(dim=(1, 2)).sum())
            s_fae += float(df.abs().mean(dim=(1, 2)).sum())
        e_mse, f_mse = s_se / n, s_fse / n
        return {"loss": self.rho * e_mse + (1.0 - self.rho) * f_mse, "energy_mse": e_mse,
                "energy_mae": s_ae / n, "force_mse": f_mse, "force_mae": s_fae / n, "n": n}


def train_schnet_member(frames: Frames, train_idx, val_idx, spec: dict, cfg=None, seed: int = 0,
                        init_state: dict | None = None,
                        log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Train one SchNet member on energies and forces with the paper's recipe (eq. 4).

    Parameters
    ----------
    frames : the whole data set (one molecule); only frames with ``frames.ok`` are used
    train_idx, val_idx : frame indices into ``frames`` (non-ok frames are skipped)
    spec : SchNet spec (:func:`make_schnet_spec`; self energies in eV)
    cfg : :class:`SchNetTrainConfig`; a :class:`rarelearn.learning.fit.TrainConfig` gives
        only its run settings (:meth:`SchNetTrainConfig.from_train_config`); None: defaults
    seed : initial weights and shuffling (same seed, data, config and threads on a CPU →
        the same parameters); the global RNG is left alone
    init_state : SchNet state dict to start from (warm start)
    log : called with a progress line about every ``cfg.log_every`` of the epochs

    Returns
    -------
    state : SchNet state dict (CPU tensors) of the epoch with the lowest validation loss
        (the lowest training-set loss when there is no validation frame)
    history : dict (JSON-serialisable), the keys of :func:`rarelearn.learning.fit.train_member`:
        per epoch ``epoch_train_loss``, ``epoch_val_loss`` (eq. 4), ``epoch_val_energy_mse``
        (eV²), ``epoch_val_energy_mae`` (eV), ``epoch_lr``; for the kept parameters
        ``best_epoch``, ``best_val_loss``, ``best_val_energy_mse``, ``train_energy_mae``,
        ``val_energy_mae`` (eV), ``train_force_mae``, ``val_force_mae`` (eV/Å per component),
        ``train_energy_rmse``, ``val_energy_rmse``; ``initial_val_loss`` (before training),
        ``n_train``, ``n_val``, ``epochs_run``, ``stop_reason``, ``seconds``,
        ``seconds_per_epoch``, ``seed``, ``device``, ``family``, ``config``.
    """
    t0 = time.perf_counter()
    if cfg is None:
        cfg = SchNetTrainConfig()
    elif not isinstance(cfg, SchNetTrainConfig):
        cfg = SchNetTrainConfig.from_train_config(cfg)
    spec = _complete_spec(spec)
    tr = _ok_indices(frames, train_idx, log, "training")
    va = _ok_indices(frames, val_idx, log, "validation")
    if len(tr) == 0:
        raise ValueError("no usable (status ok, finite labels) training frames")
    with _threads(cfg.threads):
        device = _device(cfg.device)
        data = _SchNetData(frames, np.unique(np.concatenate([tr, va])), spec, device, cfg.rho)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = build_schnet(spec)
        if init_state is not None:
            net.load_state_dict(init_state)
        net.to(device)
        tr_rows, va_rows = data.local(tr), data.local(va)
        sel_rows, select_on = (va_rows, "val") if len(va_rows) else (tr_rows, "train")
        if select_on == "train":
            log("no validation frames: keeping the parameters with the lowest training-set loss")
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor,
                                                           patience=cfg.lr_patience, min_lr=cfg.min_lr)
        gen = torch.Generator().manual_seed(int(seed))
        net.eval()
        ev0 = data.evaluate(net, sel_rows, cfg.eval_batch_size)   # initial_val_loss, cold starts too
        rec = _EpochRecorder(net, cfg, seed, select_on, "loss", log, name="schnet",
                             start=ev0 if init_state is not None else None)
        run_epochs(net, rec, cfg, opt, sched, gen, tr_rows, device,
                   batch_loss=lambda rows: data.loss(*data.predict(net, rows, create_graph=True), rows),
                   evaluate_selection=lambda: data.evaluate(net, sel_rows, cfg.eval_batch_size))
        train_seconds = rec.train_seconds
        ev_tr = data.evaluate(net, tr_rows, cfg.eval_batch_size)
        ev_va = data.evaluate(net, va_rows, cfg.eval_batch_size)
    hist = rec.hist
    hist.update({
        "family": FAMILY,
        "best_val_loss": rec.best if select_on == "val" else float("nan"),
        "best_val_energy_mse": ev_va["energy_mse"],
        "initial_val_loss": ev0["loss"] if select_on == "val" else float("nan"),
        **fit_summary(rec, ev_tr, ev_va, train_seconds, seed, device, t0, init_state, cfg),
    })
    state = {k: v.detach().cpu().clone() for k, v in rec.best_state.items()}
    return state, hist


