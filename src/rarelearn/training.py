"""Training ANI members on energies and forces (eq. 3 of the paper), splits, errors.

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
validation loss (``lr_patience``).

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

Determinism: weights are initialised inside ``torch.random.fork_rng`` seeded with
``seed`` (the global RNG is left alone) and batches are shuffled with a
``torch.Generator`` seeded with ``seed``: same seed, data, config and thread count on
a CPU give bit-identical parameters (CUDA ``index_add`` may not be bit-reproducible).
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

import numpy as np
import torch

from .dataset import Frames
from .model import HARTREE_EV, EnsembleModel, _aev_computer, build_networks, make_spec

__all__ = [
    "AUTO_MIN_EPOCHS",
    "TrainConfig",
    "seed_for",
    "random_split",
    "inherited_split",
    "train_member",
    "train_ensemble_fused",
    "best_member",
    "evaluate_errors",
]


#: ``precompute="auto"`` builds the Jacobian cache only for at least this many epochs
#: (the cache costs about as much as 5-15 epochs of the direct method).
AUTO_MIN_EPOCHS = 30


@dataclass
class TrainConfig:
    """Training settings (defaults: METHOD.md / the paper).

    Attributes
    ----------
    epochs : passes over the training frames (300)
    batch_size : frames per step (64), shuffled every epoch
    lr : learning rate of Adam (1e-3)
    force_weight : α of eq. 3 (0.1)
    train_fraction : share of frames used for training in a random split (0.8)
    early_stopping_patience : stop after this many epochs without a better validation
        energy MSE (None: never)
    lr_factor, lr_patience, min_lr : ReduceLROnPlateau on the validation loss when
        ``lr_patience`` is set (factor 0.5, floor 1e-6)
    stop_at_min_lr : stop once the learning rate has reached ``min_lr``
    weight_decay : > 0 switches to AdamW with this decoupled weight decay
    device : "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    threads : torch CPU threads during training (None: leave as is)
    precompute : "auto" | "jacobian" | "none" -- see the module docstring
    max_cache_gb : memory limit of the AEV/Jacobian cache for "auto"
    eval_batch_size : frames per evaluation chunk
    log_every : fraction of the epochs between progress lines (0.1)
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

    def __post_init__(self) -> None:
        _check_run_settings(self)
        if self.force_weight < 0:
            raise ValueError(f"force_weight must be >= 0, got {self.force_weight}")
        if self.precompute not in ("auto", "jacobian", "none"):
            raise ValueError(f"precompute must be 'auto', 'jacobian' or 'none', got {self.precompute!r}")


def _check_run_settings(cfg) -> None:
    """The checks of the run settings both families' training configs share."""
    if cfg.epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {cfg.epochs}")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if not 0.0 < cfg.train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {cfg.train_fraction}")


# ---------------------------------------------------------------------- seeds, splits
def seed_for(iteration: int, member: int, base_seed: int = 0) -> int:
    """Deterministic training seed of ``member`` in active-learning ``iteration``.

    Distinct (iteration, member, base_seed) give independent 31-bit seeds
    (numpy ``SeedSequence``); the same inputs always give the same seed.
    """
    if iteration < 0 or member < 0 or base_seed < 0:
        raise ValueError("iteration, member and base_seed must be >= 0")
    ss = np.random.SeedSequence([int(base_seed), int(iteration), int(member), 0x5EED])
    return int(ss.generate_state(1, dtype=np.uint32)[0] & 0x7FFFFFFF)


def random_split(n: int, seed: int, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation split of ``n`` frames.

    ``round(train_fraction · n)`` frames train (at least one frame on each side when
    n ≥ 2 and train_fraction < 1). Returns sorted int64 index arrays (train, val).
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    n_train = int(round(train_fraction * n))
    if train_fraction < 1.0 and n >= 2:
        n_train = min(max(n_train, 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:n_train]).astype(np.int64), np.sort(perm[n_train:]).astype(np.int64)


def inherited_split(prev_train_hashes: Sequence[str], prev_val_hashes: Sequence[str], hashes: Sequence[str],
                    seed: int, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Split that keeps the previous iteration's sides (2.3.6, "inherited").

    A frame whose hash was in the previous training (validation) set stays in training
    (validation); only frames new to this iteration are split at random with
    ``train_fraction`` (:func:`random_split` with ``seed``). Returns sorted int64 index
    arrays (train, val) into ``hashes``.
    """
    prev_t, prev_v = set(map(str, prev_train_hashes)), set(map(str, prev_val_hashes))
    hashes = [str(h) for h in hashes]
    side = np.full(len(hashes), -1, dtype=np.int64)  # 1 train, 0 val, -1 new
    for i, h in enumerate(hashes):
        if h in prev_t:
            side[i] = 1
        elif h in prev_v:
            side[i] = 0
    new = np.flatnonzero(side < 0)
    if len(new):
        tr, _ = random_split(len(new), seed, train_fraction)
        side[new] = 0
        side[new[tr]] = 1
    return np.flatnonzero(side == 1).astype(np.int64), np.flatnonzero(side == 0).astype(np.int64)


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


class _AEVStructure:
    """Neighbour pairs/triples of a batch, frozen, so AEVs become a plain function of x."""

    def __init__(self, aevc, elem: torch.Tensor, coords: torch.Tensor) -> None:
        from torchani.neighbors import discard_outside_cutoff, neighbors_to_triples

        s, p = aevc.num_species, aevc.num_species_pairs
        nb = aevc.neighborlist(aevc.radial.cutoff, elem, coords.detach())
        idx = nb.indices
        self.shape = tuple(elem.shape)
        self.idx = idx
        self.sel = (nb.distances <= aevc.angular.cutoff).nonzero().flatten()
        tr = neighbors_to_triples(discard_outside_cutoff(nb, aevc.angular.cutoff))
        flat_e = elem.reshape(-1)
        self.rad_index = idx * s + flat_e[idx].flip(0)
        sp = flat_e[idx[:, self.sel]][:, tr.side_idxs]
        tes = torch.where(tr.diff_signs == 1, sp[1], sp[0])
        self.ang_index = tr.central_idxs * p + aevc.triu_index[tes[0], tes[1]].to(torch.long)
        self.side = tr.side_idxs
        self.sign = tr.diff_signs
        self.aevc = aevc

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        aevc = self.aevc
        b, n = self.shape
        flat = x.reshape(-1, 3)
        diff = flat.index_select(0, self.idx[0]) - flat.index_select(0, self.idx[1])
        dist = diff.norm(dim=-1)
        rt = aevc.radial(dist)
        rad = torch.zeros(b * n * aevc.num_species, rt.shape[1], dtype=x.dtype, device=x.device)
        rad = rad.index_add(0, self.rad_index[0], rt).index_add(0, self.rad_index[1], rt)
        ad, adist = diff.index_select(0, self.sel), dist.index_select(0, self.sel)
        tdiff = ad.index_select(0, self.side.view(-1)).view(2, -1, 3) * self.sign.view(2, -1, 1)
        tdist = adist.index_select(0, self.side.view(-1)).view(2, -1)
        at = aevc.angular(tdist, tdiff)
        ang = torch.zeros(b * n * aevc.num_species_pairs, at.shape[1], dtype=x.dtype, device=x.device)
        ang = ang.index_add(0, self.ang_index, at)
        return torch.cat([rad.view(b, n, -1), ang.view(b, n, -1)], dim=-1)


def _aev_jacobian(aevc, elem: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AEVs (B, N, D) and their Jacobian (B, 3N, N·D): J[b, 3j+c, i·D+d] = ∂a[b,i,d]/∂x[b,j,c].

    Assembled from the derivatives of the individual radial (pair) and angular (triple)
    terms, each a function of its own pair distance / two difference vectors only: one
    forward-mode derivative of TorchANI's radial module and six of its angular module,
    scattered onto the atoms of each pair/triple. (About 5x faster than 3N forward-mode
    passes through the whole AEV.) Verified against autograd by the caller.
    """
    import torch.autograd.forward_ad as fwad

    def jvp(fn, primals, tangents):
        with fwad.dual_level():
            out = fn(fwad.make_dual(primals[0], tangents[0]))
            unpacked = fwad.unpack_dual(out)
            return unpacked.primal, unpacked.tangent

    st = _AEVStructure(aevc, elem, x)
    b, n = st.shape
    d_all, s_n, p_n = int(aevc.out_dim), aevc.num_species, aevc.num_species_pairs
    r_n, a_n = aevc.radial.num_feats, aevc.angular.num_feats
    dev = x.device
    c3 = torch.arange(3, device=dev).view(1, 1, 3)
    jac = torch.zeros(b * 3 * n * n * d_all, dtype=x.dtype, device=dev)

    def scatter(frame, center, feat, atom, vals):
        # frame, center, atom: (P,) local indices; feat: (P, F) feature index; vals: (P, F, 3)
        fi = (frame.view(-1, 1, 1) * (3 * n * n * d_all) + (3 * atom.view(-1, 1, 1) + c3) * (n * d_all)
              + center.view(-1, 1, 1) * d_all + feat.unsqueeze(-1))
        jac.index_add_(0, fi.reshape(-1), vals.reshape(-1))

    with torch.no_grad():
        aev = st(x)
        flat = x.reshape(-1, 3)
        idx = st.idx
        diff = flat.index_select(0, idx[0]) - flat.index_select(0, idx[1])
        dist = diff.norm(dim=-1)
        # radial: d rt / d x_idx0 = rt'(r) * diff / r, and the opposite for x_idx1
        _, drt = jvp(aevc.radial, (dist,), (torch.ones_like(dist),))
        u = drt.unsqueeze(-1) * (diff / dist.unsqueeze(-1)).unsqueeze(1)
        frame, i0, i1 = idx[0] // n, idx[0] % n, idx[1] % n
        r_ar = torch.arange(r_n, device=dev).view(1, -1)
        for side, center in ((0, i0), (1, i1)):
            feat = (st.rad_index[side] % s_n).view(-1, 1) * r_n + r_ar
            scatter(frame, center, feat, i0, u)
            scatter(frame, center, feat, i1, -u)
        # angular: terms of triple t depend on tdiff[0, t] and tdiff[1, t]
        aidx = idx[:, st.sel]
        ad = diff.index_select(0, st.sel)
        tdiff = ad.index_select(0, st.side.view(-1)).view(2, -1, 3) * st.sign.view(2, -1, 1)

        def ang(td):
            return aevc.angular(td.norm(dim=-1), td)

        cen = st.ang_index // p_n
        frame_t, cen_t = cen // n, cen % n
        feat_a = (st.ang_index % p_n).view(-1, 1) * a_n + torch.arange(a_n, device=dev).view(1, -1) + s_n * r_n
        for k in range(2):
            pair = st.side[k]
            a0, a1 = aidx[0, pair] % n, aidx[1, pair] % n
            sg = st.sign[k].to(x.dtype).view(-1, 1, 1)
            cols = []
            for c in range(3):
                t = torch.zeros_like(tdiff)
                t[k, :, c] = 1.0
                cols.append(jvp(ang, (tdiff,), (t,))[1])
            dt = torch.stack(cols, dim=-1) * sg  # (T, A, 3)
            scatter(frame_t, cen_t, feat_a, a0, dt)
            scatter(frame_t, cen_t, feat_a, a1, -dt)
    return aev, jac.view(b, 3 * n, n * d_all)


def _check_jacobian(aevc, elem: torch.Tensor, x: torch.Tensor, aev: torch.Tensor, jac: torch.Tensor) -> float:
    """Largest relative disagreement of (AEV, Jᵀv) with TorchANI's AEV and autograd."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        ref = aevc(elem, xg)
        v = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0)).to(ref)
        vjp, = torch.autograd.grad(ref, xg, v)
    mine = torch.bmm(v.reshape(v.shape[0], 1, -1), jac.transpose(1, 2)).view_as(vjp)
    e1 = float((aev - ref.detach()).abs().max() / ref.detach().abs().max().clamp(min=1e-12))
    e2 = float((mine - vjp).abs().max() / vjp.abs().max().clamp(min=1e-12))
    return max(e1, e2)


class _Data:
    """Training frames on the device: AEVs (and Jacobians), residual energies, forces.

    Atoms are reordered so that each element is a contiguous block (the loss is a sum
    over atoms, so the order does not matter); energies are the reference minus the
    self energies (eV), so float32 keeps the precision.
    """

    def __init__(self, frames: Frames, rows: np.ndarray, spec: dict, device: torch.device, mode: str,
                 max_cache_gb: float, chunk: int = 64, log: Callable = print, epochs: int = 300) -> None:
        t0 = time.perf_counter()
        spec = make_spec(spec["elements"], spec.get("hidden"), spec.get("self_energies"),
                         spec.get("activation", "gelu"))
        self.spec = spec
        els = spec["elements"]
        from ase.data import chemical_symbols

        z = frames.numbers
        syms = [chemical_symbols[int(v)] for v in z]
        missing = sorted(set(syms) - set(els), key=syms.index)
        if missing:
            raise ValueError(f"model covers {', '.join(els)}; structure has {', '.join(missing)}")
        elem_np = np.array([els.index(s) for s in syms], dtype=np.int64)
        perm = np.argsort(elem_np, kind="stable")
        elem_np = elem_np[perm]
        self.n_atoms = n = len(z)
        self.groups = []  # (symbol, start, stop)
        for k, e in enumerate(els):
            w = np.flatnonzero(elem_np == k)
            if len(w):
                self.groups.append((e, int(w[0]), int(w[-1]) + 1))
        self.device = device
        self.rows = np.asarray(rows, dtype=np.int64)  # frame index of each cached row
        m = len(self.rows)
        shift = sum(spec["self_energies"][s] for s in syms)
        pos = np.ascontiguousarray(frames.positions[self.rows][:, perm])
        self.coords = torch.as_tensor(pos, dtype=torch.float32, device=device)
        self.energy = torch.as_tensor(frames.energy[self.rows] - shift, dtype=torch.float32, device=device)
        self.forces = torch.as_tensor(np.ascontiguousarray(frames.forces[self.rows][:, perm]), dtype=torch.float32,
                                      device=device)
        self.aevc = _aev_computer(len(els)).to(device)
        self.elem1 = torch.as_tensor(elem_np, device=device).view(1, -1)
        d = int(self.aevc.out_dim)
        self.aev_dim = d
        jac_bytes = 4.0 * m * n * d * 3 * n
        if mode == "auto":
            mode = "jacobian" if jac_bytes <= max_cache_gb * 2**30 and epochs >= AUTO_MIN_EPOCHS else "none"
        self.mode = mode
        self.aev = torch.empty((m, n, d), dtype=torch.float32, device=device)
        self.jac = (torch.empty((m, 3 * n, n * d), dtype=torch.float32, device=device)
                    if mode == "jacobian" else None)
        for start in range(0, m, chunk):
            x = self.coords[start:start + chunk]
            el = self.elem(x.shape[0])
            if self.jac is not None:
                a, j = _aev_jacobian(self.aevc, el, x)
                if start == 0:  # guard against TorchANI internals changing under us
                    err = _check_jacobian(self.aevc, el, x, a, j)
                    if not err < 1e-4:
                        log(f"AEV Jacobian disagrees with TorchANI autograd (relative {err:.1e}); "
                            "recomputing AEVs every step instead")
                        self.jac, self.mode = None, "none"
                        with torch.no_grad():
                            a = self.aevc(el, x)
                if self.jac is not None:
                    self.jac[start:start + chunk] = j
                self.aev[start:start + chunk] = a
            else:
                with torch.no_grad():
                    self.aev[start:start + chunk] = self.aevc(el, x)
        self._buffers: dict[int, torch.Tensor] = {}
        self.seconds = time.perf_counter() - t0
        self.sqrt_n = math.sqrt(n)
        self._pos_of = {int(r): i for i, r in enumerate(self.rows)}

    def elem(self, b: int) -> torch.Tensor:
        return self.elem1.expand(b, -1).contiguous()

    def local(self, frame_idx: np.ndarray) -> torch.Tensor:
        """Cache rows of the given frame indices, as a device long tensor."""
        return torch.as_tensor([self._pos_of[int(i)] for i in frame_idx], dtype=torch.long, device=self.device)

    def energy_of(self, nets, aev: torch.Tensor) -> torch.Tensor:
        """Member energy without self energies, (B,) eV."""
        e = None
        for sym, a, b in self.groups:
            part = nets.atomics[sym](aev[:, a:b]).sum(dim=(1, 2))
            e = part if e is None else e + part
        return e * HARTREE_EV

    def predict(self, nets, rows: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies (B,) eV (without self energies) and forces (B, N, 3) eV/Å of cache rows."""
        b = rows.shape[0]
        if self.jac is not None:
            aev = self.aev.index_select(0, rows).requires_grad_(True)
            e = self.energy_of(nets, aev)
            g, = torch.autograd.grad(e.sum(), aev, create_graph=create_graph)
            buf = self._buffers.get(b)
            if buf is None:
                buf = self._buffers[b] = torch.empty((b,) + tuple(self.jac.shape[1:]), dtype=self.jac.dtype,
                                                     device=self.device)
            jac = torch.index_select(self.jac, 0, rows, out=buf)  # reused buffer: no page faults
            f = -torch.bmm(g.reshape(b, 1, -1), jac.transpose(1, 2)).view(b, self.n_atoms, 3)
        else:
            x = self.coords.index_select(0, rows).requires_grad_(True)
            aev = self.aevc(self.elem(b), x)
            e = self.energy_of(nets, aev)
            g, = torch.autograd.grad(e.sum(), x, create_graph=create_graph)
            f = -g
        return e, f

    def loss(self, e: torch.Tensor, f: torch.Tensor, rows: torch.Tensor, alpha: float) -> torch.Tensor:
        de = e - self.energy.index_select(0, rows)
        df = f - self.forces.index_select(0, rows)
        return (de * de).mean() / self.sqrt_n + alpha * (df * df).sum(dim=(1, 2)).mean() / self.n_atoms

    def evaluate(self, nets, rows: torch.Tensor, alpha: float, chunk: int) -> dict:
        """Loss and errors over ``rows`` (no parameter gradients)."""
        n = int(rows.shape[0])
        if n == 0:
            nan = float("nan")
            return {"loss": nan, "energy_mse": nan, "energy_mae": nan, "force_mae": nan, "n": 0}
        s_loss = s_se = s_ae = s_fae = 0.0
        for start in range(0, n, chunk):
            r = rows[start:start + chunk]
            with torch.enable_grad():
                e, f = self.predict(nets, r, create_graph=False)
            e, f = e.detach(), f.detach()
            de = e - self.energy.index_select(0, r)
            df = f - self.forces.index_select(0, r)
            s_loss += float(self.loss(e, f, r, alpha)) * r.shape[0]
            s_se += float((de.double() ** 2).sum())
            s_ae += float(de.double().abs().sum())
            s_fae += float(df.double().abs().mean(dim=(1, 2)).sum())
        return {"loss": s_loss / n, "energy_mse": s_se / n, "energy_mae": s_ae / n,
                "force_mae": s_fae / n, "n": n}


def _ok_indices(frames: Frames, idx, log: Callable, what: str) -> np.ndarray:
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

    ``start`` is the criterion's value of the starting parameters (kept if no epoch beats it).
    """

    def __init__(self, nets, cfg, seed: int, select_on: str, criterion: str, log: Callable,
                 name: str = "", start: float = math.inf):
        self.cfg, self.seed, self.select_on, self.criterion, self.log = cfg, int(seed), select_on, criterion, log
        self.name = f"{name} " if name else ""
        self.hist: dict[str, Any] = {"epoch_train_loss": [], "epoch_val_loss": [], "epoch_val_energy_mse": [],
                                     "epoch_val_energy_mae": [], "epoch_lr": []}
        self.best, self.best_epoch, self.best_state = start, 0, _state_copy(nets)
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
                     f"{self.select_on} loss {ev['loss']:.4g}, {self.select_on} E MAE "
                     f"{ev['energy_mae'] * 1000:.2f} meV, F MAE {ev['force_mae']:.4f} eV/Å, "
                     f"best epoch {self.best_epoch}, lr {lr:.2g}, {spe:.2f} s/epoch")
        if sched is not None:
            sched.step(ev["loss"])
        if cfg.early_stopping_patience is not None and epoch - self.best_epoch >= cfg.early_stopping_patience:
            self.stop_reason = "early stopping"
            self.log(f"{self.name}seed {self.seed}: early stop at epoch {epoch} (best {self.best_epoch})")
            return True
        if cfg.stop_at_min_lr and sched is not None and opt.param_groups[0]["lr"] <= cfg.min_lr * (1 + 1e-9):
            self.stop_reason = "minimum learning rate"
            self.log(f"{self.name}seed {self.seed}: learning rate at its minimum, stop at epoch {epoch}")
            return True
        return False

    @property
    def train_seconds(self) -> float:
        return time.perf_counter() - self.t_train


def _fit(data: _Data, train_idx: np.ndarray, val_idx: np.ndarray, cfg: TrainConfig, seed: int,
         init_state: dict | None, log: Callable) -> tuple[dict, dict]:
    t0 = time.perf_counter()
    if len(train_idx) == 0:
        raise ValueError("no usable training frames")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        nets = build_networks(data.spec, data.aev_dim)
    if init_state is not None:
        nets.load_state_dict(init_state)
    nets.to(data.device)
    tr_rows = data.local(train_idx)
    va_rows = data.local(val_idx)
    n_tr = int(tr_rows.shape[0])
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
    rec = _EpochRecorder(nets, cfg, seed, select_on, "energy_mse", log)
    for epoch in range(1, cfg.epochs + 1):
        nets.train()
        order = tr_rows[torch.randperm(n_tr, generator=gen).to(data.device)]
        s_loss = 0.0
        for start in range(0, n_tr, cfg.batch_size):
            rows = order[start:start + cfg.batch_size]
            e, f = data.predict(nets, rows, create_graph=True)
            loss = data.loss(e, f, rows, alpha)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            s_loss += float(loss.detach()) * rows.shape[0]
        nets.eval()
        ev = data.evaluate(nets, va_rows if select_on == "val" else tr_rows, alpha, cfg.eval_batch_size)
        if rec.end_epoch(epoch, nets, s_loss / n_tr, ev, opt, sched):
            break
    train_seconds = rec.train_seconds
    hist, best_epoch, best_mse, best_state = rec.hist, rec.best_epoch, rec.best, rec.best_state
    epochs_run, stop_reason = rec.epochs_run, rec.stop_reason
    nets.load_state_dict(best_state)
    nets.eval()
    ev_tr = data.evaluate(nets, tr_rows, alpha, cfg.eval_batch_size)
    ev_va = data.evaluate(nets, va_rows, alpha, cfg.eval_batch_size)
    hist.update({
        "best_epoch": best_epoch,
        "best_val_energy_mse": best_mse if select_on == "val" else float("nan"),
        "selected_on": select_on,
        "train_energy_mae": ev_tr["energy_mae"], "train_force_mae": ev_tr["force_mae"],
        "train_energy_rmse": math.sqrt(ev_tr["energy_mse"]),
        "val_energy_mae": ev_va["energy_mae"], "val_force_mae": ev_va["force_mae"],
        "val_energy_rmse": math.sqrt(ev_va["energy_mse"]) if ev_va["n"] else float("nan"),
        "n_train": n_tr, "n_val": int(va_rows.shape[0]), "epochs_run": epochs_run, "stop_reason": stop_reason,
        "seed": int(seed), "device": str(data.device), "precompute": data.mode,
        "precompute_seconds": data.seconds,
        "seconds_per_epoch": train_seconds / max(epochs_run, 1),
        "seconds": time.perf_counter() - t0,
        "warm_start": init_state is not None, "config": asdict(cfg),
    })
    state = {k: v.detach().cpu().clone() for k, v in best_state.items()}
    return state, hist


# ---------------------------------------------------------------------- public training
def train_member(frames: Frames, train_idx, val_idx, spec: dict, cfg: TrainConfig | None = None, seed: int = 0,
                 init_state: dict | None = None, log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Train one member on energies and forces (eq. 3).

    Parameters
    ----------
    frames : the whole data set (one molecule); only frames with ``frames.ok`` are used
    train_idx, val_idx : frame indices into ``frames`` (non-ok frames are skipped)
    spec : model spec (:func:`rarelearn.model.make_spec`; self energies in eV)
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
        data = _Data(frames, rows, spec, _device(cfg.device), cfg.precompute, cfg.max_cache_gb, log=log,
                     epochs=cfg.epochs)
        return _fit(data, tr, va, cfg, seed, init_state, log)


def train_ensemble_fused(frames: Frames, splits: Sequence[tuple], spec: dict, cfg: TrainConfig | None = None,
                         seeds: Sequence[int] = (), init_states: Sequence[dict | None] | None = None,
                         log: Callable[[str], None] = print) -> list[tuple[dict, dict]]:
    """Train K members sharing one AEV (and AEV-Jacobian) computation.

    The AEVs/Jacobians of the union of all members' frames are computed once; each member
    then trains exactly as :func:`train_member` on its own split, seed and warm start.

    Parameters
    ----------
    splits : K pairs (train_idx, val_idx) of frame indices
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
        data = _Data(frames, rows, spec, _device(cfg.device), cfg.precompute, cfg.max_cache_gb, log=log,
                     epochs=cfg.epochs * len(splits))
        log(f"shared AEV cache ({data.mode}) for {len(rows)} frames in {data.seconds:.1f} s")
        for (t, v), seed, init in zip(clean, seeds, init_states):
            state, hist = _fit(data, t, v, cfg, seed, init, log)
            hist["shared_precompute"] = True
            out.append((state, hist))
    return out


# ---------------------------------------------------------------------- errors
def _ok_subset(frames: Frames) -> Frames:
    return frames.subset(np.flatnonzero(frames.ok))


def best_member(ensemble: EnsembleModel, frames: Frames) -> tuple[int, list[float]]:
    """Member with the lowest force-component MAE over all usable frames (train + val).

    Returns
    -------
    k : index of the best member
    force_maes : (K,) per-member force MAE, eV/Å (mean |ΔF| over frames, atoms, components)
    """
    ok = _ok_subset(frames)
    if len(ok) == 0:
        raise ValueError("no usable frames to rank the members on")
    _, f = ensemble.energies_forces(ok.numbers, ok.positions)
    maes = [float(np.abs(f[k] - ok.forces).mean()) for k in range(f.shape[0])]
    return int(np.argmin(maes)), maes


def evaluate_errors(ensemble_or_member: EnsembleModel, frames: Frames) -> dict:
    """Errors of the ensemble-mean prediction (or of a one-member ensemble) on usable frames.

    Returns
    -------
    dict: energy_mae (eV), force_mae (eV/Å, per component), energy_rmse (eV),
    force_rmse (eV/Å), n_frames
    """
    ok = _ok_subset(frames)
    if len(ok) == 0:
        nan = float("nan")
        return {"energy_mae": nan, "force_mae": nan, "energy_rmse": nan, "force_rmse": nan, "n_frames": 0}
    e, f = ensemble_or_member.energies_forces(ok.numbers, ok.positions)
    de = e.mean(axis=0) - ok.energy
    df = f.mean(axis=0) - ok.forces
    return {"energy_mae": float(np.abs(de).mean()), "force_mae": float(np.abs(df).mean()),
            "energy_rmse": float(np.sqrt((de ** 2).mean())), "force_rmse": float(np.sqrt((df ** 2).mean())),
            "n_frames": len(ok)}
