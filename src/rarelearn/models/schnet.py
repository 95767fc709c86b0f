"""SchNet ensembles (the paper's second model family, 2.3.5).

SchNet members are ``torch_geometric.nn.models.SchNet`` with the sizes of the paper's
Table 2 (128 features and filters, 25 Gaussians, 3 interactions, cutoff 5 Å). The
neighbour search is :class:`CdistInteractionGraph` (``torch.cdist`` within each
molecule), so neither ``torch-cluster`` nor ``pyg-lib`` is needed. Everything that
leaves this module is in eV, Å and eV/Å; the networks predict the energy minus the
per-element self energies of the spec, which are added back in float64, as in
:mod:`rarelearn.models.ani`.

:class:`SchNetEnsemble` has the methods of :class:`rarelearn.models.ani.EnsembleModel`
(``n_members``, ``elements``, ``check_elements``, ``energies``, ``energies_forces``,
``member``), so :mod:`rarelearn.learning.uq`, :func:`rarelearn.learning.errors.best_member` and
:func:`rarelearn.learning.errors.evaluate_errors` take it as they are.
:class:`rarelearn.models.ani.NNPCalculator` takes only an ``EnsembleModel``: use
:class:`SchNetCalculator` (the same :class:`rarelearn.models.committee.CommitteeCalculator`, so the
same results: energy, forces, energies, energy_std, member_forces), or :func:`make_calculator`.

Model file: ``format = "rarelearn-schnet"``, ``version = 1``, laid out like the ANI
file and written and read by :mod:`rarelearn.models.files`; ``spec`` = {"family":
"schnet", "elements": [...], "self_energies": {el: eV}, "hidden_channels": 128,
"num_filters": 128, "num_interactions": 3, "num_gaussians": 25, "cutoff": 5.0}; members
are torch_geometric SchNet state dicts. Training (eq. 4 of the paper):
:mod:`rarelearn.learning.schnet_fit`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from ase.data import atomic_numbers as _ATOMIC_NUMBERS

from .committee import CommitteeBase, CommitteeCalculator, ModelError, _check_elements, _check_self_energies, _state_plain
from .files import ModelFamily

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "FAMILY",
    "TABLE2",
    "RHO",
    "make_schnet_spec",
    "CdistInteractionGraph",
    "build_schnet",
    "SchNetEnsemble",
    "SchNetCalculator",
    "FILE_FAMILY",
]

FORMAT = "rarelearn-schnet"
FORMAT_VERSION = 1
FAMILY = "schnet"
#: Architecture of the paper's Table 2 (cutoff in Å).
TABLE2: dict[str, Any] = {"hidden_channels": 128, "num_filters": 128, "num_interactions": 3,
                          "num_gaussians": 25, "cutoff": 5.0}
#: Energy weight ρ of the loss, eq. 4.
RHO = 0.1
#: SchNet's embedding covers atomic numbers below this.
_MAX_Z = 100

_INSTALL_HINT = "SchNet needs torch-geometric: pip install torch-geometric==2.8.1 (it leaves torch alone)"


# ---------------------------------------------------------------------- spec
def make_schnet_spec(elements: Sequence[str], self_energies: dict[str, float] | None,
                     hidden_channels: int = 128, num_filters: int = 128, num_interactions: int = 3,
                     num_gaussians: int = 25, cutoff: float = 5.0) -> dict:
    """Complete, validated SchNet spec (the ``"spec"`` entry of a model file).

    Parameters
    ----------
    elements : element symbols the model covers (e.g. ``["H", "C"]``)
    self_energies : energy per element added to the network's output, eV (required for all)
    hidden_channels, num_filters, num_interactions, num_gaussians : sizes (Table 2 defaults)
    cutoff : interaction cutoff, Å

    Returns
    -------
    dict with keys family ("schnet"), elements, self_energies (eV), and the five sizes.
    """
    els = _check_elements(elements)
    too_heavy = [e for e in els if _ATOMIC_NUMBERS[e] >= _MAX_Z]
    if too_heavy:
        raise ValueError(f"SchNet's embedding covers Z < {_MAX_Z}; got {', '.join(too_heavy)}")
    se = _check_self_energies(els, self_energies)
    sizes = {"hidden_channels": int(hidden_channels), "num_filters": int(num_filters),
             "num_interactions": int(num_interactions), "num_gaussians": int(num_gaussians)}
    bad = {k: v for k, v in sizes.items() if v < 1}
    if bad or sizes["num_gaussians"] < 2 or sizes["hidden_channels"] < 2:
        raise ValueError(f"SchNet sizes must be positive (>= 2 Gaussians and channels): {sizes}")
    cutoff = float(cutoff)
    if not (math.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be a positive length in Å, got {cutoff}")
    return {"family": FAMILY, "elements": els, "self_energies": se, **sizes, "cutoff": cutoff}


def _complete_spec(spec: dict) -> dict:
    """:func:`make_schnet_spec` from a spec dict (a missing family counts as SchNet)."""
    family = spec.get("family", FAMILY)
    if family != FAMILY:
        raise ValueError(f"spec is for model family {family!r}, not {FAMILY!r}")
    return make_schnet_spec(spec["elements"], spec.get("self_energies"),
                            **{k: spec[k] for k in TABLE2 if spec.get(k) is not None})


# ---------------------------------------------------------------------- network
class CdistInteractionGraph(torch.nn.Module):
    """SchNet neighbour search without torch-cluster: all pairs closer than ``cutoff``
    within each molecule, found with ``torch.cdist`` (no parameters, no buffers).

    ``forward(pos (A, 3), batch (A,)) -> (edge_index (2, E), edge_weight (E,))`` is the
    contract of ``SchNet(interaction_graph=...)``; both directions of every pair are
    listed, no self pairs, and there is no cap on the number of neighbours.
    ``edge_weight`` (Å) is differentiable with respect to ``pos``; the search is not.
    """

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        self.cutoff = float(cutoff)

    def half_pairs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs i < j of B molecules of n atoms each, x (B, n, 3) -> (i, j), indices into
        x.view(-1, 3), ordered by molecule, then i, then j."""
        n = x.shape[1]
        with torch.no_grad():
            d = torch.cdist(x.detach(), x.detach(), compute_mode="donot_use_mm_for_euclid_dist")
            mask = (d < self.cutoff) & torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
            f, i, j = mask.nonzero(as_tuple=True)
            return f * n + i, f * n + j

    def pairs(self, x: torch.Tensor) -> torch.Tensor:
        """Edges (both directions) of B molecules of n atoms, x (B, n, 3) -> (2, E)."""
        i, j = self.half_pairs(x)
        return torch.stack([torch.cat([i, j]), torch.cat([j, i])])

    def half_edges(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, n, 3) -> (i, j, d): pairs i < j and their distances (E/2,) Å, differentiable in x."""
        i, j = self.half_pairs(x)
        flat = x.reshape(-1, 3)
        return i, j, (flat.index_select(0, i) - flat.index_select(0, j)).norm(dim=-1)

    def forward(self, pos: torch.Tensor, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_atoms = pos.shape[0]
        with torch.no_grad():
            if n_atoms == 0:
                idx = torch.zeros((2, 0), dtype=torch.long, device=pos.device)
            else:
                counts = torch.bincount(batch)
                counts = counts[counts > 0]
                ordered = bool((batch[1:] >= batch[:-1]).all()) if n_atoms > 1 else True
                if ordered and bool((counts == counts[0]).all()):
                    idx = self.pairs(pos.detach().view(len(counts), int(counts[0]), 3))
                else:  # molecules of different sizes, or unordered: one molecule at a time
                    parts = []
                    for m in torch.unique(batch):
                        atoms = torch.nonzero(batch == m).flatten()
                        local = self.pairs(pos.detach()[atoms].unsqueeze(0))
                        parts.append(atoms[local])
                    idx = torch.cat(parts, dim=1)
        return idx, (pos.index_select(0, idx[0]) - pos.index_select(0, idx[1])).norm(dim=-1)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}"


def build_schnet(spec: dict):
    """One member: ``torch_geometric.nn.models.SchNet`` with the spec's sizes and a
    :class:`CdistInteractionGraph`. Weights come from torch's global random state.

    ``net(z (A,), pos (A, 3), batch (A,))`` returns (molecules, 1) energies in eV
    **without** the self energies.
    """
    try:
        from torch_geometric.nn.models import SchNet
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(_INSTALL_HINT) from exc
    spec = _complete_spec(spec)
    return SchNet(hidden_channels=spec["hidden_channels"], num_filters=spec["num_filters"],
                  num_interactions=spec["num_interactions"], num_gaussians=spec["num_gaussians"],
                  cutoff=spec["cutoff"], interaction_graph=CdistInteractionGraph(spec["cutoff"]),
                  readout="add")


def _net_energy(net, z: torch.Tensor, i: torch.Tensor, j: torch.Tensor, d: torch.Tensor,
                b: int, n: int) -> torch.Tensor:
    """``SchNet.forward`` (sum readout; no mean, std, atomref) on precomputed pairs -> (b,) eV.

    Parameters: z (b·n,) atomic numbers; i, j (P,) atom index pairs i < j within each
    molecule; d (P,) their distances, Å. The same arithmetic as ``net(z, pos, batch)``
    (checked in the tests), rearranged for speed: the filter W(d_ij) = nn(rbf(d_ij)) · C(d_ij)
    of each interaction is computed once per pair and used for both directions, i → j and
    j → i (half the filter-network work of PyG's edge list), and the K members of an
    ensemble share one neighbour search.
    """
    cut = 0.5 * (torch.cos(d * (math.pi / net.cutoff)) + 1.0)
    rbf = net.distance_expansion(d)
    h = net.embedding(z)
    for block in net.interactions:
        conv = block.conv
        w = conv.nn(rbf) * cut.unsqueeze(-1)
        x = conv.lin1(h)
        agg = torch.zeros_like(x).index_add(0, j, x.index_select(0, i) * w).index_add(0, i, x.index_select(0, j) * w)
        h = h + block.lin(block.act(conv.lin2(agg)))
    h = net.lin2(net.act(net.lin1(h)))
    return h.view(b, n).sum(dim=1)


# ---------------------------------------------------------------------- ensemble
class SchNetEnsemble(CommitteeBase):
    """K SchNet members sharing a spec (sizes, cutoff, self energies); numpy in, numpy out.

    Duck-types :class:`rarelearn.models.ani.EnsembleModel`: energies are (K, F) eV with the
    self energies added in float64, forces (K, F, N, 3) eV/Å from autograd.

    Parameters
    ----------
    nets : K ``torch_geometric`` SchNet modules built by :func:`build_schnet`
    spec : the model spec (:func:`make_schnet_spec`)
    meta : metadata from the model file
    source : file it was read from (for error messages), or None
    """

    def __init__(self, nets: Sequence, spec: dict, meta: dict | None = None, source: str | None = None) -> None:
        if len(nets) < 1:
            raise ValueError("an ensemble needs at least one member")
        self.spec = _complete_spec(spec)
        self.nets = torch.nn.ModuleList(list(nets)).eval()
        for p in self.nets.parameters():
            p.requires_grad_(False)
        self.meta = dict(meta or {})
        self.source = source
        self.graph = CdistInteractionGraph(self.spec["cutoff"])
        self._sae = {_ATOMIC_NUMBERS[e]: float(self.spec["self_energies"][e]) for e in self.spec["elements"]}
        self._z: dict[bytes, torch.Tensor] = {}

    # ------------------------------------------------------------ construction
    @classmethod
    def from_states(cls, spec: dict, states: Sequence[dict], meta: dict | None = None,
                    source: str | None = None) -> "SchNetEnsemble":
        """Ensemble from member state dicts (SchNet ``state_dict()`` keys, strict)."""
        spec = _complete_spec(spec)
        nets = []
        for st in states:
            net = build_schnet(spec)
            net.load_state_dict(st)
            nets.append(net)
        return cls(nets, spec, meta, source)

    def member_states(self) -> list[dict]:
        """State dicts (CPU copies) of the members, in order."""
        return [_state_plain(net.state_dict()) for net in self.nets]

    def save(self, path, meta: dict | None = None) -> Path:
        """Write with :func:`save_schnet` (meta defaults to ``self.meta``)."""
        from .files import save_schnet

        return save_schnet(path, self.member_states(), self.spec, self.meta if meta is None else meta)

    # ------------------------------------------------------------ properties
    @property
    def family(self) -> str:
        return FAMILY

    @property
    def n_members(self) -> int:
        return len(self.nets)

    @property
    def device(self) -> torch.device:
        return next(self.nets.parameters()).device

    @property
    def _torch_module(self) -> torch.nn.Module:
        return self.nets

    def _clear_cache(self) -> None:
        self._z.clear()

    # ------------------------------------------------------------ evaluation
    def _numbers_tensor(self, numbers: np.ndarray, b: int) -> torch.Tensor:
        key = numbers.tobytes() + str(self.device).encode() + str(b).encode()
        z = self._z.get(key)
        if z is None:
            if len(self._z) > 64:
                self._z.clear()
            z = torch.as_tensor(numbers, dtype=torch.long, device=self.device).repeat(b)
            self._z[key] = z
        return z

    def member_energies_torch(self, numbers: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        """Member energies without self energies, (K, B) eV, differentiable in x (B, N, 3)."""
        b, n = x.shape[0], x.shape[1]
        z = self._numbers_tensor(numbers, b)
        i, j, d = self.graph.half_edges(x)
        return torch.stack([_net_energy(net, z, i, j, d, b, n) for net in self.nets])

    def _member_outputs(self, numbers: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        return self.member_energies_torch(numbers, x)


# ---------------------------------------------------------------------- ASE
class SchNetCalculator(CommitteeCalculator):
    """ASE calculator for a :class:`SchNetEnsemble` (or a SchNet model file).

    The results contract of :class:`rarelearn.models.ani.NNPCalculator`:

    energy : float, eV (ensemble mean, or member ``member``)
    forces : (N, 3) eV/Å
    energies : (K,) member energies, eV
    energy_std : float, standard deviation of the member energies (ddof=0), eV
    member_forces : (K, N, 3) eV/Å, when asked for (``calc.get_property("member_forces", atoms)``)

    Parameters
    ----------
    model : SchNetEnsemble, or path of a SchNet model file
    member : None: energy and forces are the ensemble mean; int k: those of member k only
    device : optional torch device to move the model to
    """

    _family = SchNetEnsemble

    @staticmethod
    def _load(path):
        from .files import load_schnet

        return load_schnet(path)




def _check_states(path: Path, spec: dict, states: list) -> None:
    """Every member state fits the (completed) spec, else a :class:`ModelError` naming it."""
    for k, st in enumerate(states):
        try:
            build_schnet(spec).load_state_dict(st)
        except RuntimeError as exc:
            raise ModelError(f"{path}: member {k} does not match the SchNet spec: {exc}") from exc


#: This family's model files (:mod:`rarelearn.models.files`).
FILE_FAMILY = ModelFamily(name=FAMILY, label="SchNet", format=FORMAT, version=FORMAT_VERSION,
                          complete_spec=_complete_spec, check_states=_check_states,
                          committee=SchNetEnsemble, calculator=SchNetCalculator)
