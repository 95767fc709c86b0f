"""TorchANI neural-network potentials: spec, networks, the ANI committee, ASE calculator.

A model ("member") is a set of per-element multilayer perceptrons on ANI-2x atomic
environment vectors (AEVs), plus fixed per-element self energies. An ensemble is K
members that share the AEV definition and the self energies. Everything that leaves
this module is in eV, Å and eV/Å; TorchANI works in Hartree inside (converted with
:data:`ase.units.Hartree`).

Architecture (docs/method.md, Table 1 of the paper)
-----------------------------------------------------
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

Model file: ``format = "rarelearn-ani"``, ``version = 1``, written and read by
:mod:`rarelearn.models.files`; ``spec`` = {"elements": [...], "hidden": {el: [...]},
"self_energies": {el: eV}, "activation": "gelu"}; each member state dict has the keys of
``torchani.nn.ANINetworks.state_dict()`` (``atomics.<El>.layers.<i>.weight`` ...).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

import numpy as np
import torch
from ase.data import atomic_numbers as _ATOMIC_NUMBERS
from ase.units import Hartree as _HARTREE

from .committee import CommitteeBase, CommitteeCalculator, ModelError, _check_elements, _check_self_energies, _state_plain
from .files import ModelFamily

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "DEFAULT_HIDDEN",
    "FALLBACK_HIDDEN",
    "HARTREE_EV",
    "make_spec",
    "build_ani",
    "build_networks",
    "EnsembleModel",
    "NNPCalculator",
    "FILE_FAMILY",
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


# ---------------------------------------------------------------------- spec
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
    se = _check_self_energies(els, self_energies)
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


def _complete_ani_spec(spec: dict) -> dict:
    return make_spec(spec["elements"], spec.get("hidden"), spec.get("self_energies"), spec.get("activation", "gelu"))


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
        from .files import save_ensemble

        return save_ensemble(path, self.member_states(), self.spec, self.meta if meta is None else meta)

    # ------------------------------------------------------------ properties
    @property
    def n_members(self) -> int:
        return len(self.module.neural_networks.members)

    @property
    def device(self) -> torch.device:
        return self.module.energy_shifter.self_energies.device

    @property
    def _torch_module(self) -> torch.nn.Module:
        return self.module

    def _clear_cache(self) -> None:
        self._species_cache.clear()

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
        from .files import load_ensemble

        return load_ensemble(path)




def _check_states(path: Path, spec: dict, states: list) -> None:
    """Every member state fits the (completed) spec, else a :class:`ModelError` naming it."""
    module = _build_from_spec(spec, len(states))
    for k, st in enumerate(states):
        try:
            module.neural_networks.members[k].load_state_dict(st)
        except RuntimeError as exc:
            raise ModelError(f"{path}: member {k} does not match the spec: {exc}") from exc


#: This family's model files (:mod:`rarelearn.models.files`).
FILE_FAMILY = ModelFamily(name="ani", label="ANI", format=FORMAT, version=FORMAT_VERSION,
                          complete_spec=_complete_ani_spec, check_states=_check_states,
                          committee=EnsembleModel, calculator=NNPCalculator)
