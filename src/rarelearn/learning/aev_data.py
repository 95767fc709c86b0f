"""ANI training data on the device: AEVs and their Jacobians ∂a/∂x computed once per
training set (forward-mode autograd through TorchANI's radial and angular terms, checked
against TorchANI's own AEVs), residual energies and forces (eV, eV/Å). See
:mod:`rarelearn.learning.fit` for why and when the Jacobians are cached.

One molecule: :class:`_Data`. Several (a :class:`rarelearn.frameset.FrameSet`):
:class:`_MultiData`, one :class:`_Data` per part behind the same small interface the fit
loop calls (``local``, ``batch_loss``, ``evaluate``, ``spec``, ``aev_dim``, ``device``,
``mode``, ``seconds``); :func:`make_data` picks the one that fits."""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch

from ..dataset import Frames
from ..frameset import FrameSet
from ..models.ani import HARTREE_EV, _aev_computer, make_spec

__all__ = ["AUTO_MIN_EPOCHS"]

#: ``precompute="auto"`` builds the Jacobian cache only for at least this many epochs
#: (the cache costs about as much as 5-15 epochs of the direct method).
AUTO_MIN_EPOCHS = 30


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


class _Rows:
    """Cache rows of frame indices: ``rows[i]`` is the frame index of cache row i."""

    def _index_rows(self, rows: np.ndarray) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        self._pos_of = {int(r): i for i, r in enumerate(self.rows)}

    def local(self, frame_idx: np.ndarray) -> torch.Tensor:
        """Cache rows of the given frame indices, as a device long tensor."""
        return torch.as_tensor([self._pos_of[int(i)] for i in frame_idx], dtype=torch.long, device=self.device)


class _Data(_Rows):
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
        self._index_rows(rows)  # frame index of each cached row
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

    def elem(self, b: int) -> torch.Tensor:
        return self.elem1.expand(b, -1).contiguous()

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

    def batch_loss(self, nets, rows: torch.Tensor, alpha: float) -> torch.Tensor:
        """Eq.-3 loss of cache rows ``rows``, with the graph for a parameter step."""
        return self.loss(*self.predict(nets, rows, create_graph=True), rows, alpha)

    def evaluate(self, nets, rows: torch.Tensor, alpha: float, chunk: int) -> dict:
        """Loss and errors over ``rows`` (no parameter gradients); ``force_mae`` is the mean
        over frames of each frame's mean |ΔF| over atoms and components."""
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




class _MultiData(_Rows):
    """Training frames of several molecules (a :class:`FrameSet`): one :class:`_Data` per
    part with frames in ``rows`` (each its own AEV/Jacobian cache and atom order).

    Cache rows follow the sorted global frame indices, so each part's rows are one
    contiguous block ``[start, stop)`` and global cache row r is row ``r - start`` of that
    part's cache. A batch spanning several parts is split by part; each part's eq.-3 loss
    (with its own √N and N) is weighted by its share of the batch's frames, so the loss
    stays the mean over the batch's frames of the per-frame terms. With ``mode="auto"``
    the parts share ``max_cache_gb`` in proportion to their Jacobian sizes (m·N²), so the
    choice is the one a single cache of all parts would make.
    """

    def __init__(self, frames: FrameSet, rows: np.ndarray, spec: dict, device: torch.device, mode: str,
                 max_cache_gb: float, chunk: int = 64, log: Callable = print, epochs: int = 300) -> None:
        t0 = time.perf_counter()
        self.device = device
        self._index_rows(np.unique(np.asarray(rows, dtype=np.int64)))
        part, local = frames.part_of(self.rows)
        present = [k for k in range(len(frames.parts)) if (part == k).any()]
        if not present:
            raise ValueError("no frames to cache")
        size = {k: float((part == k).sum()) * frames.parts[k].n_atoms ** 2 for k in present}
        total = sum(size.values())
        self.parts: list[tuple[int, int, _Data]] = []  # (start, stop, data) in cache rows
        for k in present:
            at = np.flatnonzero(part == k)
            data = _Data(frames.parts[k], local[at], spec, device, mode, max_cache_gb * size[k] / total,
                         chunk=chunk, log=log, epochs=epochs)
            self.parts.append((int(at[0]), int(at[-1]) + 1, data))
        first = self.parts[0][2]
        self.spec, self.aev_dim = first.spec, first.aev_dim
        modes = {d.mode for _, _, d in self.parts}
        self.mode = modes.pop() if len(modes) == 1 else "mixed"
        self.seconds = time.perf_counter() - t0

    def split(self, rows: torch.Tensor) -> list[tuple[_Data, torch.Tensor]]:
        """(part data, that part's cache rows) for each part ``rows`` touches, in part order;
        the rows keep their order within a part."""
        out = []
        for start, stop, data in self.parts:
            sub = rows[(rows >= start) & (rows < stop)] - start
            if sub.shape[0]:
                out.append((data, sub))
        return out

    def batch_loss(self, nets, rows: torch.Tensor, alpha: float) -> torch.Tensor:
        """Eq.-3 loss of cache rows ``rows``: the parts' losses weighted by their frame counts."""
        parts = self.split(rows)
        if len(parts) == 1:
            return parts[0][0].batch_loss(nets, parts[0][1], alpha)
        n = int(rows.shape[0])
        return sum(data.batch_loss(nets, sub, alpha) * (sub.shape[0] / n) for data, sub in parts)

    def evaluate(self, nets, rows: torch.Tensor, alpha: float, chunk: int) -> dict:
        """:meth:`_Data.evaluate` over ``rows`` of all parts: each entry the frame-weighted
        mean of the parts' (so ``force_mae`` is still the mean over frames of per-frame MAEs)."""
        parts = self.split(rows)
        if len(parts) <= 1:
            data, sub = parts[0] if parts else (self.parts[0][2], rows[:0])
            return data.evaluate(nets, sub, alpha, chunk)
        evs = [data.evaluate(nets, sub, alpha, chunk) for data, sub in parts]
        n = sum(ev["n"] for ev in evs)
        out = {k: sum(ev[k] * ev["n"] for ev in evs) / n for k in ("loss", "energy_mse", "energy_mae", "force_mae")}
        out["n"] = n
        return out


def make_data(frames: "Frames | FrameSet", rows: np.ndarray, spec: dict, device: torch.device, mode: str,
              max_cache_gb: float, log: Callable = print, epochs: int = 300) -> "_Data | _MultiData":
    """The device cache of ``frames`` at frame indices ``rows``: :class:`_Data` for one
    molecule, :class:`_MultiData` for a :class:`FrameSet`."""
    cls = _MultiData if isinstance(frames, FrameSet) else _Data
    return cls(frames, rows, spec, device, mode, max_cache_gb, log=log, epochs=epochs)
