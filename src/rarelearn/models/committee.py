"""What every model family's committee shares: the error type, element checks, self
energies, batched member energies and forces, and the ASE calculator's results contract
(energy, forces, energies, energy_std, member_forces; eV, Å, eV/Å)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.data import atomic_numbers as _ATOMIC_NUMBERS
from ase.data import chemical_symbols as _SYMBOLS

__all__ = ["ModelError", "CommitteeBase", "CommitteeCalculator"]


class ModelError(ValueError):
    """A model file is missing, truncated, of another format, or does not fit the structure."""


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



def _check_self_energies(elements: list[str], self_energies: dict | None) -> dict[str, float]:
    """The self energy (eV) of every element, finite, as floats; ValueError otherwise."""
    if self_energies is None:
        raise ValueError("self_energies (eV per element) are required")
    missing = [e for e in elements if e not in self_energies]
    if missing:
        raise ValueError(f"self energies missing for {', '.join(missing)}")
    se = {e: float(self_energies[e]) for e in elements}
    if not all(math.isfinite(v) for v in se.values()):
        raise ValueError(f"self energies must be finite: {se}")
    return se


def _state_plain(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"member state entry {k!r} is a {type(v).__name__}, not a tensor")
        out[str(k)] = v.detach().cpu().clone()
    return out


def _as_numbers(numbers) -> np.ndarray:
    return np.asarray(numbers, dtype=np.int64).reshape(-1)


class CommitteeBase:
    """What every model family's ensemble shares: element checks and self energies.

    Subclasses set ``spec`` (its ``elements``: list of symbols), ``source`` (file or None)
    and ``_sae`` (atomic number -> self energy, eV), and name their torch module
    (``_torch_module``).
    """

    spec: dict
    source: str | None
    _sae: dict

    @property
    def elements(self) -> list[str]:
        return list(self.spec["elements"])

    @property
    def dtype(self) -> torch.dtype:
        return next(self._torch_module.parameters()).dtype

    def to(self, device=None, dtype: torch.dtype | None = None):
        """Move to ``device`` and/or cast to ``dtype`` (e.g. torch.float64), in place; returns self."""
        self._torch_module.to(device=None if device is None else torch.device(device), dtype=dtype)
        self._clear_cache()
        return self

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


