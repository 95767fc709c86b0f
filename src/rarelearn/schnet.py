"""SchNet ensembles (the paper's second model family, 2.3.5) and a C–C bond-breaking report.

SchNet members are ``torch_geometric.nn.models.SchNet`` with the sizes of the paper's
Table 2 (128 features and filters, 25 Gaussians, 3 interactions, cutoff 5 Å). The
neighbour search is :class:`CdistInteractionGraph` (``torch.cdist`` within each
molecule), so neither ``torch-cluster`` nor ``pyg-lib`` is needed. Everything that
leaves this module is in eV, Å and eV/Å; the networks predict the energy minus the
per-element self energies of the spec, which are added back in float64, as in
:mod:`rarelearn.model`.

:class:`SchNetEnsemble` has the methods of :class:`rarelearn.model.EnsembleModel`
(``n_members``, ``elements``, ``check_elements``, ``energies``, ``energies_forces``,
``member``), so :mod:`rarelearn.uq`, :func:`rarelearn.training.best_member` and
:func:`rarelearn.training.evaluate_errors` take it as they are.
:class:`rarelearn.model.NNPCalculator` takes only an ``EnsembleModel``: use
:class:`SchNetCalculator` (the same :class:`rarelearn.model.CommitteeCalculator`, so the
same results: energy, forces, energies, energy_std, member_forces), or :func:`make_calculator`.

Model file (``format = "rarelearn-schnet"``, ``version = 1``)
-------------------------------------------------------------
Laid out like the ANI file, readable with ``torch.load(path, weights_only=True)``::

    {"format": "rarelearn-schnet", "version": 1,
     "spec": {"family": "schnet", "elements": [...], "self_energies": {el: eV},
              "hidden_channels": 128, "num_filters": 128, "num_interactions": 3,
              "num_gaussians": 25, "cutoff": 5.0},
     "members": [state_dict, ...],   # torch_geometric SchNet state dicts
     "meta": {...}}

Training (eq. 4 of the paper)
-----------------------------
``L = ρ · MSE(E) + (1 − ρ) · MSE(F)`` with ρ = 0.1, MSE(E) the mean squared energy error
per frame (eV²) and MSE(F) the mean squared force error per Cartesian component
((eV/Å)²). Adam (lr 5e-4), ``ReduceLROnPlateau`` on the validation loss (factor 0.8,
patience 5, min lr 1e-6); training stops when the learning rate reaches its minimum or
after ``epochs``; the parameters kept are those of the epoch with the lowest validation
loss. See :class:`SchNetTrainConfig` and :func:`train_schnet_member`.

Bond report
-----------
:func:`cc_bond_report` follows the C–C bonds of a reference structure along any
trajectory (ANI or SchNet SMD) and flags the failures of the paper's Fig. 4b: more than
two fragments, and a C–C bond broken other than the one being stretched.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from ase.calculators.calculator import Calculator
from ase.data import atomic_numbers as _ATOMIC_NUMBERS
from ase.data import chemical_symbols as _SYMBOLS
from ase.data import covalent_radii as _COVALENT_RADII

from .dataset import Frames
from .geometry import DEFAULT_BOND_SCALE, bond_lengths, bonds_of_elements, covalent_bonds, fragment_counts
from .model import (_ANI_FILES, CommitteeBase, CommitteeCalculator, ModelError, _as_numbers, _check_elements,
                    _read_model_file, _state_plain, _write_model_file)
from .training import _check_run_settings, _device, _EpochRecorder, _ok_indices, _threads

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
    "save_schnet",
    "load_schnet",
    "load_model",
    "save_model",
    "make_calculator",
    "SchNetTrainConfig",
    "train_schnet_member",
    "cc_bond_report",
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
    if self_energies is None:
        raise ValueError("self_energies (eV per element) are required")
    missing = [e for e in els if e not in self_energies]
    if missing:
        raise ValueError(f"self energies missing for {', '.join(missing)}")
    se = {e: float(self_energies[e]) for e in els}
    if not all(math.isfinite(v) for v in se.values()):
        raise ValueError(f"self energies must be finite: {se}")
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

    Duck-types :class:`rarelearn.model.EnsembleModel`: energies are (K, F) eV with the
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
        return save_schnet(path, self.member_states(), self.spec, self.meta if meta is None else meta)

    # ------------------------------------------------------------ properties
    @property
    def family(self) -> str:
        return FAMILY

    @property
    def n_members(self) -> int:
        return len(self.nets)

    @property
    def elements(self) -> list[str]:
        return list(self.spec["elements"])

    @property
    def device(self) -> torch.device:
        return next(self.nets.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.nets.parameters()).dtype

    def to(self, device=None, dtype: torch.dtype | None = None) -> "SchNetEnsemble":
        """Move to ``device`` and/or cast to ``dtype`` (e.g. torch.float64), in place; returns self."""
        self.nets.to(device=None if device is None else torch.device(device), dtype=dtype)
        self._z.clear()
        return self

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

    The results contract of :class:`rarelearn.model.NNPCalculator`:

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
        return load_schnet(path)


# ---------------------------------------------------------------------- files
def save_schnet(path, states: Sequence[dict], spec: dict, meta: dict | None = None) -> Path:
    """Write a SchNet model file atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    path : output file (``.pt``)
    states : one SchNet state dict per member (tensors on any device)
    spec : model spec (:func:`make_schnet_spec`), completed and validated here
    meta : free-form metadata (str/int/float/bool/None/list/dict; numpy scalars converted)

    Returns
    -------
    Path of the written file.
    """
    path = Path(path)
    states = list(states)
    if not states:
        raise ValueError("an ensemble needs at least one member")
    spec = _complete_spec(spec)
    for k, st in enumerate(states):
        try:
            build_schnet(spec).load_state_dict(st)
        except RuntimeError as exc:
            raise ModelError(f"{path}: member {k} does not match the SchNet spec: {exc}") from exc
    return _write_model_file(path, FORMAT, FORMAT_VERSION, spec, states, meta)


# model files of this family: format tag -> (version, name, spec completer, class)
_SCHNET_FILES = {FORMAT: (FORMAT_VERSION, "SchNet", _complete_spec, SchNetEnsemble)}


def load_schnet(path, device: str | torch.device | None = None) -> SchNetEnsemble:
    """Read a model file written by :func:`save_schnet` (``torch.load(weights_only=True)``).

    Raises
    ------
    ModelError
        naming the file when it is missing, truncated, not a rarelearn SchNet model (an
        ANI file included), of another format version, or its members do not match its spec.
    """
    model = _read_model_file(path, _SCHNET_FILES)
    if device is not None:
        model.to(device)
    return model


def load_model(path, device: str | torch.device | None = None):
    """Either family from its format tag: :class:`SchNetEnsemble` for "rarelearn-schnet",
    :class:`rarelearn.model.EnsembleModel` for "rarelearn-ani" (anything else: ModelError)."""
    model = _read_model_file(path, {**_ANI_FILES, **_SCHNET_FILES})
    if device is not None:
        model.to(device)
    return model


def save_model(path, states: Sequence[dict], spec: dict, meta: dict | None = None) -> Path:
    """:func:`save_schnet` when ``spec["family"] == "schnet"``, else
    :func:`rarelearn.model.save_ensemble` (ANI; a spec without a family is ANI here)."""
    if spec.get("family", "ani") == FAMILY:
        return save_schnet(path, states, spec, meta)
    from .model import save_ensemble

    ani_spec = {k: v for k, v in spec.items() if k != "family"}
    return save_ensemble(path, list(states), ani_spec, meta)


def make_calculator(model, member: int | None = None, device=None) -> Calculator:
    """The ASE calculator of either family: :class:`SchNetCalculator` or
    :class:`rarelearn.model.NNPCalculator` (``model``: an ensemble or a model file)."""
    from .model import EnsembleModel, NNPCalculator

    if not isinstance(model, (SchNetEnsemble, EnsembleModel)):
        model = load_model(model)
    if isinstance(model, SchNetEnsemble):
        return SchNetCalculator(model, member=member, device=device)
    return NNPCalculator(model, member=member, device=device)


# ---------------------------------------------------------------------- training
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

    #: settings taken over from a :class:`rarelearn.training.TrainConfig`
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
    cfg : :class:`SchNetTrainConfig`; a :class:`rarelearn.training.TrainConfig` gives
        only its run settings (:meth:`SchNetTrainConfig.from_train_config`); None: defaults
    seed : initial weights and shuffling (same seed, data, config and threads on a CPU →
        the same parameters); the global RNG is left alone
    init_state : SchNet state dict to start from (warm start)
    log : called with a progress line about every ``cfg.log_every`` of the epochs

    Returns
    -------
    state : SchNet state dict (CPU tensors) of the epoch with the lowest validation loss
        (the lowest training-set loss when there is no validation frame)
    history : dict (JSON-serialisable), the keys of :func:`rarelearn.training.train_member`:
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
        n_tr = int(tr_rows.shape[0])
        sel_rows, select_on = (va_rows, "val") if len(va_rows) else (tr_rows, "train")
        if select_on == "train":
            log("no validation frames: keeping the parameters with the lowest training-set loss")
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor,
                                                           patience=cfg.lr_patience, min_lr=cfg.min_lr)
        gen = torch.Generator().manual_seed(int(seed))
        net.eval()
        ev0 = data.evaluate(net, sel_rows, cfg.eval_batch_size)
        rec = _EpochRecorder(net, cfg, seed, select_on, "loss", log, name="schnet", start=ev0["loss"])
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            order = tr_rows[torch.randperm(n_tr, generator=gen).to(device)]
            s_loss = 0.0
            for start in range(0, n_tr, cfg.batch_size):
                rows = order[start:start + cfg.batch_size]
                e, f = data.predict(net, rows, create_graph=True)
                loss = data.loss(e, f, rows)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                s_loss += float(loss.detach()) * rows.shape[0]
            net.eval()
            ev = data.evaluate(net, sel_rows, cfg.eval_batch_size)
            if rec.end_epoch(epoch, net, s_loss / n_tr, ev, opt, sched):
                break
        train_seconds = rec.train_seconds
        hist, best_epoch, best_loss, best_state = rec.hist, rec.best_epoch, rec.best, rec.best_state
        epochs_run, stop_reason = rec.epochs_run, rec.stop_reason
        net.load_state_dict(best_state)
        net.eval()
        ev_tr = data.evaluate(net, tr_rows, cfg.eval_batch_size)
        ev_va = data.evaluate(net, va_rows, cfg.eval_batch_size)
    hist.update({
        "family": FAMILY,
        "best_epoch": best_epoch,
        "best_val_loss": best_loss if select_on == "val" else float("nan"),
        "best_val_energy_mse": ev_va["energy_mse"],
        "initial_val_loss": ev0["loss"] if select_on == "val" else float("nan"),
        "selected_on": select_on,
        "train_energy_mae": ev_tr["energy_mae"], "train_force_mae": ev_tr["force_mae"],
        "train_energy_rmse": math.sqrt(ev_tr["energy_mse"]),
        "val_energy_mae": ev_va["energy_mae"], "val_force_mae": ev_va["force_mae"],
        "val_energy_rmse": math.sqrt(ev_va["energy_mse"]) if ev_va["n"] else float("nan"),
        "n_train": n_tr, "n_val": int(va_rows.shape[0]), "epochs_run": epochs_run, "stop_reason": stop_reason,
        "seed": int(seed), "device": str(device),
        "seconds_per_epoch": train_seconds / max(epochs_run, 1),
        "seconds": time.perf_counter() - t0,
        "warm_start": init_state is not None, "config": asdict(cfg),
    })
    state = {k: v.detach().cpu().clone() for k, v in best_state.items()}
    return state, hist


# ---------------------------------------------------------------------- bond report
def _first(mask: np.ndarray) -> int | None:
    w = np.flatnonzero(mask)
    return int(w[0]) if w.size else None


def _load_path_bonds(numbers, reference_positions: np.ndarray, pulled: tuple[int, int],
                     pairs: np.ndarray, scale: float) -> np.ndarray:
    """(M,) bool: bond m of ``pairs`` lies on the shortest bond path between the pulled atoms
    in the reference structure (all bonds, H included, count as edges)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import shortest_path

    n = len(numbers)
    allb = covalent_bonds(numbers, reference_positions, scale)
    g = coo_matrix((np.ones(len(allb)), (allb[:, 0], allb[:, 1])), shape=(n, n)).tocsr() if len(allb) \
        else coo_matrix((n, n)).tocsr()
    i, j = pulled
    _, pred = shortest_path(g, directed=False, unweighted=True, indices=[i], return_predecessors=True)
    on_path = set()
    node = j
    while node != i and node >= 0:
        prev = int(pred[0, node])
        if prev < 0:
            return np.zeros(len(pairs), dtype=bool)  # pulled atoms not connected
        on_path.add((min(prev, node), max(prev, node)))
        node = prev
    return np.array([(int(a), int(b)) in on_path for a, b in pairs], dtype=bool)


def cc_bond_report(numbers, positions, reference_positions, pulled: Sequence[int] | None = None,
                   expected_bond: Sequence[int] | None = None, scale: float = DEFAULT_BOND_SCALE) -> dict:
    """C–C bonds along a trajectory and flags for unphysical bond breaking (any model family).

    The C–C bonds followed are those of ``reference_positions``
    (:func:`rarelearn.geometry.bonds_of_elements`); a bond counts as broken above
    ``break_length = scale · 2 r_C`` (1.3 × 1.52 = 1.98 Å by default).

    The **stretched bond** is ``expected_bond`` when given; else, of the C–C bonds broken
    in the last frame, the one whose final broken stretch began first (the bond the pull
    broke; a tie goes to the longest in the last frame); with none broken in the last
    frame, the longest there (the most strained one).

    Flags per frame:

    * ``multi_fragment`` — more than 2 fragments (:func:`rarelearn.geometry.fragment_counts`,
      all atoms): the molecule came apart in more than the two pieces one dissociation makes.
    * ``wrong_bond_broken`` — a C–C bond other than the stretched one is above the break
      length; or the stretched bond is above it although it is not on the load path, the
      shortest bond path between the two ``pulled`` atoms in the reference structure.

    Decision: when no ``expected_bond`` is given, whichever single load-path C–C bond
    breaks is accepted. Pulling butane by C0 and C3 may break C1–C2 or a terminal C–C
    bond; the reference method (GFN2-xTB or DFTB) itself breaks different bonds in
    different runs, so this function does not call one of them wrong. To require a
    particular bond (for example the one the reference SMD broke), pass ``expected_bond``.
    A second C–C bond that goes beyond the break length, even briefly and even if it
    reforms (two long C–C bonds, Fig. 4b iii of the paper), is flagged.

    Parameters
    ----------
    numbers : (N,) atomic numbers
    positions : (F, N, 3) or (N, 3) Å
    reference_positions : (N, 3) Å, intact molecule that defines the bonds
    pulled : (i, j) atom indices of the pulled atoms (e.g. the terminal carbons); None: no
        load-path check
    expected_bond : (a, b) the C–C bond that should break, or None
    scale : bond criterion (see :mod:`rarelearn.geometry`)

    Returns
    -------
    dict with
        bonds (M, 2) int: the reference C–C bonds (i < j); bond_lengths (F, M) Å;
        break_length float Å; broken (F, M) bool; n_fragments (F,) int;
        pulled_distance (F,) Å or None; on_load_path (M,) bool (all True without ``pulled``);
        stretched_bond (a, b) or None (no C–C bond); stretched_index int or None;
        multi_fragment (F,) bool; wrong_bond_broken (F,) bool;
        first_break, first_multi_fragment, first_wrong_bond_broken: int frame index or None
        (first_break: first frame with the stretched bond above the break length);
        summary: the scalars above plus n_frames and max_fragments, as JSON types.
    """
    z = _as_numbers(numbers)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    ref = np.asarray(reference_positions, dtype=np.float64).reshape(-1, 3)
    if pos.ndim != 3 or pos.shape[1:] != (len(z), 3) or ref.shape != (len(z), 3):
        raise ValueError(f"positions must be (F, {len(z)}, 3) and reference_positions ({len(z)}, 3); "
                         f"got {pos.shape} and {ref.shape}")
    n_frames = pos.shape[0]
    pairs = bonds_of_elements(z, ref, ("C", "C"), scale)
    lengths = bond_lengths(z, pos, reference_bonds=pairs) if len(pairs) else np.zeros((n_frames, 0))
    break_len = float(scale * 2.0 * _COVALENT_RADII[6])
    broken = lengths > break_len
    frags = fragment_counts(z, pos, scale) if n_frames else np.zeros(0, dtype=np.int64)

    if pulled is not None:
        pi, pj = (int(v) for v in pulled)
        if not (0 <= pi < len(z) and 0 <= pj < len(z)) or pi == pj:
            raise ValueError(f"pulled must be two different atom indices below {len(z)}, got {pulled}")
        on_path = _load_path_bonds(z, ref, (pi, pj), pairs, scale)
        pulled_distance = np.linalg.norm(pos[:, pi] - pos[:, pj], axis=-1)
    else:
        on_path = np.ones(len(pairs), dtype=bool)
        pulled_distance = None

    s_idx = None
    if expected_bond is not None:
        a, b = sorted(int(v) for v in expected_bond)
        hit = np.flatnonzero((pairs[:, 0] == a) & (pairs[:, 1] == b)) if len(pairs) else np.zeros(0, int)
        if not hit.size:
            raise ValueError(f"expected_bond {tuple(expected_bond)} is not a C–C bond of the reference structure")
        s_idx = int(hit[0])
    elif len(pairs) and n_frames:
        end_broken = np.flatnonzero(broken[-1])
        if end_broken.size:  # the bond of the final break: the earliest start of a run broken to the end
            starts = []
            for m in end_broken:
                intact = np.flatnonzero(~broken[:, m])
                starts.append(int(intact[-1]) + 1 if intact.size else 0)
            starts = np.array(starts)
            cand = end_broken[starts == starts.min()]
            s_idx = int(cand[np.argmax(lengths[-1, cand])])
        else:
            s_idx = int(np.argmax(lengths[-1]))

    wrong = np.zeros(n_frames, dtype=bool)
    if s_idx is not None:
        others = broken.copy()
        others[:, s_idx] = False
        wrong = others.any(axis=1)
        if not on_path[s_idx]:
            wrong |= broken[:, s_idx]
    multi = frags > 2
    first_break = _first(broken[:, s_idx]) if s_idx is not None else None
    stretched = (int(pairs[s_idx, 0]), int(pairs[s_idx, 1])) if s_idx is not None else None
    out = {
        "bonds": pairs, "bond_lengths": lengths, "break_length": break_len, "broken": broken,
        "n_fragments": frags, "pulled_distance": pulled_distance, "on_load_path": on_path,
        "stretched_bond": stretched, "stretched_index": s_idx,
        "multi_fragment": multi, "wrong_bond_broken": wrong,
        "first_break": first_break, "first_multi_fragment": _first(multi),
        "first_wrong_bond_broken": _first(wrong),
    }
    out["summary"] = {
        "n_frames": int(n_frames), "break_length": break_len,
        "stretched_bond": list(stretched) if stretched else None,
        "stretched_on_load_path": bool(on_path[s_idx]) if s_idx is not None else None,
        "first_break": first_break, "first_multi_fragment": out["first_multi_fragment"],
        "first_wrong_bond_broken": out["first_wrong_bond_broken"],
        "max_fragments": int(frags.max()) if n_frames else 0,
    }
    return out
