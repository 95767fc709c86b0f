"""TorchANI neural-network potentials: building, model files, ensembles, ASE calculator.

A model ("member") is a set of per-element multilayer perceptrons on ANI-2x atomic
environment vectors (AEVs), plus fixed per-element self energies. An ensemble is K
members that share the AEV definition and the self energies. Everything that leaves
this module is in eV, Å and eV/Å; TorchANI works in Hartree inside (converted with
:data:`ase.units.Hartree`).

Architecture (METHOD.md, Table 1 of the paper)
----------------------------------------------
* AEVs: ``torchani.aev.AEVComputer.like_2x(num_species=len(elements))`` -- the ANI-2x
  radial (16 shifts, cutoff 5.1 Å) and angular (8 x 4 terms, cutoff 3.5 Å) parameters for
  the configured elements only; AEV length ``16 S + 32 S (S + 1) / 2`` for S elements
  (128 for H, C; 384 for H, C, N, O). The element order of the model is the order of
  ``spec["elements"]``; it fixes the AEV layout and is stored in the model file.
* Per-element networks ``AtomicNetwork([aev_dim, *hidden[el], 1], activation="gelu",
  bias=True)``. Default hidden sizes (:data:`DEFAULT_HIDDEN`): H 256-192-160 and
  C 224-192-160 from the paper's Table 1; N and O 192-160-128 and S, F, Cl 160-128-96 as
  in TorchANI's ANI-2x networks (the paper has no N/O networks); any other element
  falls back to 160-128-96.
* Self energies: the labeller's isolated-atom energies (eV in the spec, converted to
  Hartree for ``torchani.sae.SelfEnergy``). The networks learn the remainder.

Model file (``format = "rarelearn-ani"``, ``version = 1``)
--------------------------------------------------------
A ``torch.save`` dictionary holding only tensors, str, int, float, bool, None, list and
dict, so ``torch.load(path, weights_only=True)`` reads it::

    {"format": "rarelearn-ani", "version": 1,
     "spec": {"elements": [...], "hidden": {el: [...]}, "self_energies": {el: eV},
              "activation": "gelu"},
     "members": [state_dict, ...],   # one torchani ANINetworks state dict per member
     "meta": {...}}                  # free-form: iteration, seeds, ...

Each member state dict has the keys of ``torchani.nn.ANINetworks.state_dict()``
(``atomics.<El>.layers.<i>.weight`` ...). Files are written to a temporary name and
renamed into place.
"""
from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.data import atomic_numbers as _ATOMIC_NUMBERS
from ase.data import chemical_symbols as _SYMBOLS
from ase.units import Hartree as _HARTREE

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "DEFAULT_HIDDEN",
    "FALLBACK_HIDDEN",
    "HARTREE_EV",
    "ModelError",
    "read_model_blob",
    "make_spec",
    "build_ani",
    "build_networks",
    "save_ensemble",
    "load_ensemble",
    "EnsembleModel",
    "NNPCalculator",
    "export_torchscript",
]

FORMAT = "rarelearn-ani"
FORMAT_VERSION = 1
#: 1 Hartree in eV (ASE's value).
HARTREE_EV: float = float(_HARTREE)

#: Default hidden-layer sizes per element: H and C from the paper's Table 1, the
#: others as TorchANI's ANI-2x networks.
DEFAULT_HIDDEN: dict[str, list[int]] = {
    "H": [256, 192, 160],
    "C": [224, 192, 160],
    "N": [192, 160, 128],
    "O": [192, 160, 128],
    "S": [160, 128, 96],
    "F": [160, 128, 96],
    "Cl": [160, 128, 96],
}
#: Hidden sizes for an element without an entry in :data:`DEFAULT_HIDDEN`.
FALLBACK_HIDDEN: list[int] = [160, 128, 96]


class ModelError(ValueError):
    """A model file is missing, truncated, of another format, or does not fit the structure."""


# ---------------------------------------------------------------------- spec
def _check_elements(elements: Sequence[str]) -> list[str]:
    els = [str(e) for e in elements]
    if not els:
        raise ValueError("a model needs at least one element")
    bad = [e for e in els if e not in _ATOMIC_NUMBERS or e == "X"]
    if bad:
        raise ValueError(f"unknown element symbol(s): {', '.join(bad)}")
    if len(set(els)) != len(els):
        raise ValueError(f"repeated element in {els}")
    return els


def make_spec(elements: Sequence[str], hidden: dict[str, Sequence[int]] | None = None,
              self_energies: dict[str, float] | None = None, activation: str = "gelu") -> dict:
    """Complete, validated model spec (the ``"spec"`` entry of a model file).

    Parameters
    ----------
    elements : element symbols, in the model's order (e.g. ``["H", "C"]``)
    hidden : hidden-layer sizes per element; missing elements get :data:`DEFAULT_HIDDEN`
        (or :data:`FALLBACK_HIDDEN`)
    self_energies : isolated-atom energy per element, eV (required for every element)
    activation : ``"gelu"`` (the paper) or ``"celu"`` (TorchANI's CELU, alpha 0.1)

    Returns
    -------
    dict with keys elements (list[str]), hidden (dict[str, list[int]]),
    self_energies (dict[str, float], eV), activation (str)
    """
    els = _check_elements(elements)
    hidden = dict(hidden or {})
    h = {}
    for e in els:
        sizes = hidden.get(e, DEFAULT_HIDDEN.get(e, FALLBACK_HIDDEN))
        sizes = [int(s) for s in sizes]
        if any(s <= 0 for s in sizes):
            raise ValueError(f"hidden layer sizes of {e} must be positive, got {sizes}")
        h[e] = sizes
    if self_energies is None:
        raise ValueError("self_energies (eV per element) are required")
    missing = [e for e in els if e not in self_energies]
    if missing:
        raise ValueError(f"self energies missing for {', '.join(missing)}")
    se = {e: float(self_energies[e]) for e in els}
    if not all(math.isfinite(v) for v in se.values()):
        raise ValueError(f"self energies must be finite: {se}")
    if activation not in ("gelu", "celu"):
        raise ValueError(f"activation must be 'gelu' or 'celu', got {activation!r}")
    return {"elements": els, "hidden": h, "self_energies": se, "activation": str(activation)}


def _aev_computer(n_elements: int):
    from torchani.aev import AEVComputer

    return AEVComputer.like_2x(num_species=n_elements)


def build_networks(spec: dict, aev_dim: int | None = None):
    """One member: a ``torchani.nn.ANINetworks`` with one ``AtomicNetwork`` per element.

    Weights are initialised from torch's global random state (seed it before calling).
    """
    from torchani.nn import ANINetworks, AtomicNetwork

    els = list(spec["elements"])
    if aev_dim is None:
        aev_dim = int(_aev_computer(len(els)).out_dim)
    return ANINetworks({
        e: AtomicNetwork([aev_dim, *spec["hidden"][e], 1], activation=spec.get("activation", "gelu"),
                         bias=True)
        for e in els})


def build_ani(elements: Sequence[str], hidden: dict[str, Sequence[int]] | None,
              self_energies: dict[str, float], n_members: int = 1, activation: str = "gelu"):
    """TorchANI model with ANI-2x AEVs for ``elements`` and ``n_members`` ensemble members.

    Parameters
    ----------
    elements : element symbols; their order is the model's element order
    hidden : hidden-layer sizes per element (None: :data:`DEFAULT_HIDDEN`)
    self_energies : isolated-atom energies, eV per element (stored in Hartree inside)
    n_members : number of members K of the ``torchani.nn.Ensemble``
    activation : ``"gelu"`` (default, the paper) or ``"celu"``

    Returns
    -------
    torchani.arch.ANI
        Call as ``_, e = model((Z, X), ensemble_values=True)`` with Z (B, N) atomic numbers
        and X (B, N, 3) Å; e is (K, B) in **Hartree** (self energies included).
    """
    spec = make_spec(elements, hidden, self_energies, activation)
    return _build_from_spec(spec, n_members)


def _build_from_spec(spec: dict, n_members: int):
    from torchani.arch import ANI
    from torchani.nn import Ensemble
    from torchani.sae import SelfEnergy

    if n_members < 1:
        raise ValueError(f"n_members must be >= 1, got {n_members}")
    els = list(spec["elements"])
    aev = _aev_computer(len(els))
    nets = Ensemble([build_networks(spec, int(aev.out_dim)) for _ in range(n_members)])
    sae = SelfEnergy(els, [spec["self_energies"][e] / HARTREE_EV for e in els])
    return ANI(symbols=tuple(els), aev_computer=aev, neural_networks=nets, energy_shifter=sae,
               periodic_table_index=True)


# ---------------------------------------------------------------------- files
def _plain(obj: Any, where: str = "meta") -> Any:
    """Convert to the types ``torch.load(weights_only=True)`` accepts (numpy scalars etc.)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, np.generic):  # before float: np.float64 is a float subclass
        return obj.item()
    if obj is None:
        return None
    for kind in (bool, int, float, str):  # plain builtins (not subclasses such as enums)
        if isinstance(obj, kind):
            return kind(obj)
    if isinstance(obj, np.ndarray):
        return [_plain(x, where) for x in obj.tolist()]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v, where) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(x, where) for x in obj]
    raise TypeError(f"{where}: cannot store a {type(obj).__name__} in a model file")


def _state_plain(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"member state entry {k!r} is a {type(v).__name__}, not a tensor")
        out[str(k)] = v.detach().cpu().clone()
    return out


def _complete_ani_spec(spec: dict) -> dict:
    return make_spec(spec["elements"], spec.get("hidden"), spec.get("self_energies"), spec.get("activation", "gelu"))


def save_ensemble(path, members_state: list[dict], spec: dict, meta: dict | None = None) -> Path:
    """Write a model file atomically (temporary file in the same folder, then rename).

    Parameters
    ----------
    path : output file (``.pt``)
    members_state : one ``ANINetworks`` state dict per member (tensors on any device)
    spec : model spec (see :func:`make_spec`); completed and validated here
    meta : free-form metadata (str/int/float/bool/None/list/dict; numpy scalars converted)

    Returns
    -------
    Path of the written file.
    """
    path = Path(path)
    if not members_state:
        raise ValueError("an ensemble needs at least one member")
    spec = _complete_ani_spec(spec)
    # check the states fit the spec before writing anything
    module = _build_from_spec(spec, len(members_state))
    for k, st in enumerate(members_state):
        try:
            module.neural_networks.members[k].load_state_dict(st)
        except RuntimeError as exc:
            raise ModelError(f"{path}: member {k} does not match the spec: {exc}") from exc
    return _write_model_file(path, FORMAT, FORMAT_VERSION, spec, members_state, meta)


def _write_model_file(path: Path, fmt: str, version: int, spec: dict, states: Sequence[dict],
                      meta: dict | None) -> Path:
    """The model file of either family, written atomically (temporary file in the same
    folder, then rename): ``format``, ``version``, ``spec``, ``members``, ``meta``."""
    from .dataset import atomic_path

    blob = {"format": fmt, "version": version, "spec": _plain(spec, "spec"),
            "members": [_state_plain(st) for st in states], "meta": _plain(meta or {}, "meta")}
    with atomic_path(path) as tmp:  # a full disk is reported as such, naming the file
        torch.save(blob, tmp)
    return Path(path)


def _load_blob(path: Path):
    """``torch.load(weights_only=True)`` of a model file, failing with a :class:`ModelError`
    that names the file and what to do (and not PyTorch's advice to load it with
    ``weights_only=False``, which a model file never needs)."""
    from .dataset import remake_hint

    if not path.exists():
        raise ModelError(f"{path}: no such model file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, garbage, pickle of other objects, ...
        raise ModelError(f"{path}: not a readable rarelearn model file (truncated, corrupt or not a model: "
                         f"torch.load raised {type(exc).__name__}); {remake_hint(path)}") from None


def read_model_blob(path) -> dict:
    """The dictionary in a rarelearn model file of either family (``format``, ``version``,
    ``spec``, ``members``, ``meta``), read with ``torch.load(weights_only=True)``.

    Raises :class:`ModelError` naming the file and what to do when it is missing,
    unreadable (truncated, corrupt, or pickled objects that are not a model) or not a
    rarelearn model file. PyTorch's own advice for a refused file (to load it with
    ``weights_only=False``) is not passed on: a model file never needs it."""
    from .dataset import remake_hint

    path = Path(path)
    blob = _load_blob(path)
    if not isinstance(blob, dict) or not isinstance(blob.get("members"), list) or "spec" not in blob:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise ModelError(f"{path}: not a rarelearn model file (format {found!r}, no spec and members); "
                         f"{remake_hint(path)}")
    return blob


def _read_model_file(path, kinds: dict):
    """The committee in a model file, by its format tag: ``kinds`` maps each accepted format
    to ``(version, family name, spec completer, committee class)``. A :class:`ModelError`
    names the file when it is missing, unreadable, of another format (with a hint when it is
    the other family's), another version, incomplete, or its members do not fit its spec."""
    path = Path(path)
    blob = _load_blob(path)
    found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
    if found not in kinds:
        hint = {"rarelearn-ani": " (an ANI model: read it with rarelearn.model.load_ensemble)",
                "rarelearn-schnet": " (a SchNet model: read it with rarelearn.schnet.load_schnet)"}.get(found, "")
        what = " or ".join(k[1] for k in kinds.values())
        raise ModelError(f"{path}: not a rarelearn {what} model file (format {found!r}, expected "
                         f"{' or '.join(repr(f) for f in kinds)}){hint}")
    version, family, complete_spec, cls = kinds[found]
    if blob.get("version") != version:
        raise ModelError(f"{path}: {family} model file version {blob.get('version')!r}, this rarelearn "
                         f"reads version {version}")
    try:
        spec = complete_spec(blob["spec"])
        states = list(blob["members"])
        meta = dict(blob.get("meta") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: incomplete or invalid {family} model file: {exc}") from exc
    if not states:
        raise ModelError(f"{path}: model file has no members")
    try:
        return cls.from_states(spec, states, meta=meta, source=str(path))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ModelError(f"{path}: members do not match the {family} spec: {exc}") from exc


def load_ensemble(path, device: str | torch.device | None = None) -> "EnsembleModel":
    """Read a model file written by :func:`save_ensemble` (``torch.load(weights_only=True)``).

    Raises
    ------
    ModelError
        naming the file when it is missing, truncated, not a rarelearn ANI model, of
        another format version, or its members do not match its spec.
    """
    model = _read_model_file(path, _ANI_FILES)
    if device is not None:
        model.to(device)
    return model


# ---------------------------------------------------------------------- ensemble
class _StackedMembers:
    """The K members' networks of each element stacked into batched matrices (inference).

    Evaluates all members with one ``baddbmm`` per layer and element instead of K
    ``Linear`` calls: the same numbers, less overhead (single-frame MD calls, UQ over
    thousands of frames). Built from, and checked against, the module's parameters.
    """

    def __init__(self, module, elements: Sequence[str]) -> None:
        members = list(module.neural_networks.members)
        self.key = self.key_of(module)
        self.k = len(members)
        self.layers: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.act = {}
        with torch.no_grad():
            for e in elements:
                nets = [m.atomics[e] for m in members]
                n_layers = len(nets[0].layers) + 1
                stack = []
                for i in range(n_layers):
                    lins = [net.layers[i] if i < n_layers - 1 else net.final_layer for net in nets]
                    w = torch.stack([lin.weight.t() for lin in lins]).contiguous()  # (K, in, out)
                    b = torch.stack([lin.bias.view(1, -1) for lin in lins])  # (K, 1, out)
                    stack.append((w, b))
                self.layers[e] = stack
                self.act[e] = nets[0].activation

    @staticmethod
    def key_of(module) -> tuple:
        return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in module.neural_networks.parameters())

    def __call__(self, aev: torch.Tensor, groups: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
        """aev (B, N, D), groups [(element, atom indices)] -> (K, B) Hartree."""
        b_n = aev.shape[0]
        total = aev.new_zeros((self.k, b_n))
        for e, idx in groups:
            x = aev.index_select(1, idx).reshape(1, -1, aev.shape[-1]).expand(self.k, -1, -1)
            layers = self.layers[e]
            for i, (w, b) in enumerate(layers):
                x = torch.baddbmm(b, x, w)
                if i < len(layers) - 1:
                    x = self.act[e](x)
            total = total + x.view(self.k, b_n, -1).sum(dim=-1)
        return total


def _as_numbers(numbers) -> np.ndarray:
    return np.asarray(numbers, dtype=np.int64).reshape(-1)


class CommitteeBase:
    """What every model family's ensemble shares: element checks and self energies.

    Subclasses set ``elements`` (list of symbols), ``source`` (file or None) and ``_sae``
    (atomic number -> self energy, eV).
    """

    elements: list
    source: str | None
    _sae: dict

    def check_elements(self, numbers) -> None:
        """Raise :class:`ModelError` if the structure has elements the model does not cover."""
        have = set(self.elements)
        z = sorted(set(_as_numbers(numbers).tolist()))
        syms = [_SYMBOLS[i] if 0 <= i < len(_SYMBOLS) else str(i) for i in z]
        missing = [s for s in syms if s not in have]
        if missing:
            where = f"{self.source}: " if self.source else ""
            raise ModelError(f"{where}model covers {', '.join(self.elements)}; structure has "
                             f"{', '.join(missing)}")

    def self_energy(self, numbers) -> float:
        """Sum of the self energies (isolated-atom energies, shifted) of ``numbers``, eV."""
        self.check_elements(numbers)
        return float(sum(self._sae[int(z)] for z in _as_numbers(numbers)))

    def __repr__(self) -> str:
        src = f", source={self.source!r}" if self.source else ""
        return f"{type(self).__name__}(n_members={self.n_members}, elements={self.elements}{src})"

    def member(self, k: int):
        """A one-member ensemble of the same family holding (a copy of) member ``k``, on the
        same device and dtype."""
        if not -self.n_members <= k < self.n_members:
            raise IndexError(f"member {k} out of range for an ensemble of {self.n_members}")
        k = k % self.n_members
        sub = type(self).from_states(self.spec, [self.member_states()[k]],
                                     meta=dict(self.meta, member_of=self.source, member_index=k),
                                     source=self.source)
        return sub.to(self.device, self.dtype)

    # What a family provides for the batched evaluation below: ``n_members``, ``device``,
    # ``dtype``, and its members' network energies in units of ``_energy_unit`` eV.
    _energy_unit = 1.0

    def _member_outputs(self, numbers: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        """Member energies without self energies, (K, B), in ``_energy_unit``; differentiable in x."""
        raise NotImplementedError

    @staticmethod
    def _positions(numbers: np.ndarray, positions) -> np.ndarray:
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim == 2:
            pos = pos[None]
        if pos.ndim != 3 or pos.shape[1:] != (numbers.shape[0], 3):
            raise ValueError(f"positions must be (F, {numbers.shape[0]}, 3), got {pos.shape}")
        return pos

    def energies(self, numbers, positions, batch_size: int = 256) -> np.ndarray:
        """Member energies.

        Parameters
        ----------
        numbers : (N,) atomic numbers
        positions : (F, N, 3) or (N, 3) Å
        batch_size : frames per network call

        Returns
        -------
        (K, F) float64 eV (self energies added in float64)
        """
        numbers = _as_numbers(numbers)
        shift = self.self_energy(numbers)
        pos = self._positions(numbers, positions)
        out = np.empty((self.n_members, pos.shape[0]), dtype=np.float64)
        with torch.no_grad():
            for start in range(0, pos.shape[0], batch_size):
                x = torch.as_tensor(pos[start:start + batch_size], dtype=self.dtype, device=self.device)
                e = self._member_outputs(numbers, x)
                out[:, start:start + x.shape[0]] = e.double().cpu().numpy() * self._energy_unit
        return out + shift

    def energies_forces(self, numbers, positions, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Member energies and forces (autograd).

        Returns
        -------
        E : (K, F) float64 eV
        F : (K, F, N, 3) float64 eV/Å
        """
        numbers = _as_numbers(numbers)
        shift = self.self_energy(numbers)
        pos = self._positions(numbers, positions)
        f, n, k = pos.shape[0], pos.shape[1], self.n_members
        e_out = np.empty((k, f), dtype=np.float64)
        f_out = np.empty((k, f, n, 3), dtype=np.float64)
        for start in range(0, f, batch_size):
            x = torch.as_tensor(pos[start:start + batch_size], dtype=self.dtype, device=self.device)
            x.requires_grad_(True)
            with torch.enable_grad():
                e = self._member_outputs(numbers, x)
                for m in range(k):
                    g, = torch.autograd.grad(e[m].sum(), x, retain_graph=m < k - 1)
                    f_out[m, start:start + x.shape[0]] = -g.double().cpu().numpy() * self._energy_unit
            e_out[:, start:start + x.shape[0]] = e.detach().double().cpu().numpy() * self._energy_unit
        return e_out + shift, f_out


class EnsembleModel(CommitteeBase):
    """K TorchANI members sharing AEVs and self energies; numpy in, numpy out (eV, Å).

    Parameters
    ----------
    module : ``torchani.arch.ANI`` whose ``neural_networks`` is a ``torchani.nn.Ensemble``
    spec : the model spec (:func:`make_spec`)
    meta : metadata from the model file
    source : file it was read from (for error messages), or None

    Attributes
    ----------
    n_members : int
    elements : list[str], the model's element order
    spec, meta : dict
    source : str or None
    device : torch.device
    """

    def __init__(self, module, spec: dict, meta: dict | None = None, source: str | None = None) -> None:
        self.module = module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.spec = spec
        self.meta = dict(meta or {})
        self.source = source
        self._sae = {_ATOMIC_NUMBERS[e]: float(spec["self_energies"][e]) for e in spec["elements"]}
        self._stacked: _StackedMembers | None = None
        self._groups: dict[bytes, list[tuple[str, torch.Tensor]]] = {}
        self._species_cache: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------ construction
    @classmethod
    def from_states(cls, spec: dict, states: Sequence[dict], meta: dict | None = None,
                    source: str | None = None) -> "EnsembleModel":
        """Ensemble from member state dicts (``ANINetworks`` keys)."""
        spec = _complete_ani_spec(spec)
        module = _build_from_spec(spec, len(states))
        for k, st in enumerate(states):
            module.neural_networks.members[k].load_state_dict(st)
        return cls(module, spec, meta, source)

    def member_states(self) -> list[dict]:
        """State dicts (CPU copies) of the members, in order."""
        return [_state_plain(m.state_dict()) for m in self.module.neural_networks.members]

    def save(self, path, meta: dict | None = None) -> Path:
        """Write this ensemble with :func:`save_ensemble` (meta defaults to ``self.meta``)."""
        return save_ensemble(path, self.member_states(), self.spec, self.meta if meta is None else meta)

    # ------------------------------------------------------------ properties
    @property
    def n_members(self) -> int:
        return len(self.module.neural_networks.members)

    @property
    def elements(self) -> list[str]:
        return list(self.spec["elements"])

    @property
    def device(self) -> torch.device:
        return self.module.energy_shifter.self_energies.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    def to(self, device=None, dtype: torch.dtype | None = None) -> "EnsembleModel":
        """Move to ``device`` and/or cast to ``dtype``, in place; returns self."""
        self.module.to(device=None if device is None else torch.device(device), dtype=dtype)
        self._species_cache.clear()
        return self

    # ------------------------------------------------------------ evaluation
    def _species(self, numbers: np.ndarray, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = numbers.tobytes() + str(self.device).encode() + str(batch).encode()
        hit = self._species_cache.get(key)
        if hit is None:
            if len(self._species_cache) > 64:
                self._species_cache.clear()
            z = torch.as_tensor(numbers, dtype=torch.long, device=self.device).view(1, -1)
            elem = self.module.species_converter(z)
            hit = self._species_cache[key] = (elem.expand(batch, -1).contiguous(), z)
        return hit

    def _element_groups(self, numbers: np.ndarray) -> list[tuple[str, torch.Tensor]]:
        key = numbers.tobytes() + str(self.device).encode()
        g = self._groups.get(key)
        if g is None:
            g = [(e, torch.as_tensor(np.flatnonzero(numbers == _ATOMIC_NUMBERS[e]), device=self.device))
                 for e in self.elements if (numbers == _ATOMIC_NUMBERS[e]).any()]
            self._groups[key] = g
        return g

    def _nn_hartree(self, elem: torch.Tensor, coords: torch.Tensor, numbers: np.ndarray | None = None
                    ) -> torch.Tensor:
        """Member network energies without self energies, (K, B) Hartree."""
        aev = self.module.aev_computer(elem, coords)
        if numbers is None:
            return self.module.neural_networks(elem, aev, ensemble_values=True)
        st = self._stacked
        if st is None or st.key != _StackedMembers.key_of(self.module):
            st = self._stacked = _StackedMembers(self.module, self.elements)
        return st(aev, self._element_groups(numbers))

    _energy_unit = HARTREE_EV

    def _member_outputs(self, numbers: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        """Member network energies without self energies, (K, B) Hartree."""
        elem, _ = self._species(numbers, x.shape[0])
        return self._nn_hartree(elem, x, numbers)


# model files of this family: format tag -> (version, name, spec completer, class)
_ANI_FILES = {FORMAT: (FORMAT_VERSION, "ANI", _complete_ani_spec, EnsembleModel)}


# ---------------------------------------------------------------------- ASE
class CommitteeCalculator(Calculator):
    """ASE calculator over a committee of either family (the results contract below);
    subclasses name the family (``_family``) and how to load it from a file (``_load``)."""

    implemented_properties = ["energy", "forces", "energies", "energy_std", "member_forces"]
    default_parameters: dict = {}
    _family: type = CommitteeBase

    @staticmethod
    def _load(path):
        raise NotImplementedError

    def __init__(self, model, member: int | None = None, device=None, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(model, self._family):
            model = self._load(model)
        if device is not None:
            model.to(device)
        if member is not None and not 0 <= int(member) < model.n_members:
            raise ModelError(f"member {member} out of range: the ensemble has {model.n_members} members")
        self.model = model
        self.member = None if member is None else int(member)
        self._numbers_key: bytes | None = None
        self._shift = 0.0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        numbers = np.asarray(self.atoms.numbers, dtype=np.int64)
        key = numbers.tobytes()
        if key != self._numbers_key:
            self._shift = self.model.self_energy(numbers)  # checks the elements
            self._numbers_key = key
        m = self.model
        unit = m._energy_unit
        x = torch.as_tensor(self.atoms.positions, dtype=m.dtype, device=m.device).unsqueeze(0)
        want_forces = "forces" in properties
        want_members = "member_forces" in properties
        with torch.set_grad_enabled(want_forces or want_members):
            if want_forces or want_members:
                x.requires_grad_(True)
            e = m._member_outputs(numbers, x)[:, 0]  # (K,) in units of `unit` eV
            k = e.shape[0]
            if want_members:
                fm = []
                for j in range(k):
                    g, = torch.autograd.grad(e[j], x, retain_graph=j < k - 1)
                    fm.append(-g[0])
                fmem = torch.stack(fm).double().cpu().numpy() * unit
                self.results["member_forces"] = fmem
                if want_forces:
                    self.results["forces"] = (fmem.mean(axis=0) if self.member is None
                                              else fmem[self.member].copy())
            elif want_forces:
                target = e.mean() if self.member is None else e[self.member]
                g, = torch.autograd.grad(target, x)
                self.results["forces"] = -g[0].double().cpu().numpy() * unit
        energies = e.detach().double().cpu().numpy() * unit + self._shift
        self.results["energies"] = energies
        self.results["energy"] = float(energies.mean() if self.member is None else energies[self.member])
        self.results["free_energy"] = self.results["energy"]
        self.results["energy_std"] = float(energies.std()) if energies.size > 1 else 0.0


class NNPCalculator(CommitteeCalculator):
    """ASE calculator for an :class:`EnsembleModel` (or a model file).

    Parameters
    ----------
    model : EnsembleModel, or path of a model file
    member : None: energy and forces are the ensemble mean; int k: those of member k only
        (``energies`` and ``energy_std`` still cover all members)
    device : optional torch device to move the model to

    Results
    -------
    energy : float, eV
    forces : (N, 3) eV/Å
    energies : (K,) member energies, eV
    energy_std : float, standard deviation of the member energies (ddof=0), eV
    member_forces : (K, N, 3) eV/Å, only when asked for (``calc.get_property("member_forces", atoms)``)

    Notes
    -----
    One frame per call. The species tensor is cached between calls; gradients are
    enabled only when forces are requested. Set ``torch.set_num_threads(1)`` for MD
    jobs (one thread is as fast as two for a 20-atom molecule).
    """

    _family = EnsembleModel

    @staticmethod
    def _load(path):
        return load_ensemble(path)


# ---------------------------------------------------------------------- TorchScript
class _ScriptableANI(torch.nn.Module):
    """TorchScript wrapper: atomic numbers + positions (Å) -> energies (eV).

    ``forward(numbers (B, N) or (N,), positions (B, N, 3)) -> (B,) eV`` is the ensemble
    mean (or the single member); ``member_energies`` gives (K, B) eV.
    """

    def __init__(self, ani) -> None:
        super().__init__()
        self.ani = ani
        self.hartree_ev = HARTREE_EV

    def forward(self, numbers: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if numbers.dim() == 1:
            numbers = numbers.unsqueeze(0).expand(positions.shape[0], numbers.shape[0]).contiguous()
        _, e = self.ani((numbers, positions))
        return e * self.hartree_ev

    @torch.jit.export
    def member_energies(self, numbers: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if numbers.dim() == 1:
            numbers = numbers.unsqueeze(0).expand(positions.shape[0], numbers.shape[0]).contiguous()
        _, e = self.ani((numbers, positions), ensemble_values=True)
        return e * self.hartree_ev


def export_torchscript(model_path, out_path, member: int | None = None):
    """Compile a model file to TorchScript (``torch.jit.script``), written atomically.

    The result loads with ``torch.jit.load(out_path)`` without rarelearn or TorchANI
    installed. ``module(numbers, positions)`` takes atomic numbers (N,) or (B, N) int64 and
    positions (B, N, 3) Å (float32) and returns the ensemble-mean energy (B,) in eV
    (member ``member`` only if given); ``module.member_energies(...)`` returns (K, B) eV.
    The model spec is stored as the extra file ``rarelearn_spec.json``.

    Returns
    -------
    Path of the written file.
    """
    model = load_ensemble(model_path)
    if member is not None:
        model = model.member(member)
    ani = copy.deepcopy(model.module).cpu()
    for p in ani.parameters():
        p.requires_grad_(False)
    try:
        scripted = torch.jit.script(_ScriptableANI(ani).eval())
    except Exception as exc:  # pragma: no cover - depends on the torchani/torch pair
        raise ModelError(f"{model_path}: TorchScript compilation failed: {exc}") from exc
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    extra = {"rarelearn_spec.json": json.dumps({"spec": model.spec, "member": member,
                                                "source": str(model_path), "units": "eV, angstrom"})}
    try:
        torch.jit.save(scripted, tmp, _extra_files=extra)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path
