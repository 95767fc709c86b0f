"""What every labeller shares: the interface (:class:`Labeller`: label frames, with
failures recorded per frame; isolated-atom energies), its errors, and the free atoms'
ground-state multiplicities. The methods: :mod:`.xtb`, :mod:`.dftb`, :mod:`.pyscf`."""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, Calculator
from ase.data import atomic_numbers, chemical_symbols

from ...dataset import STATUS_FAILED, STATUS_OK, Frames

__all__ = ["GROUND_STATE_MULTIPLICITY", "LabellerError", "Labeller"]

log = logging.getLogger("rarelearn.chem.labellers")

#: Spin multiplicity 2S+1 of the free atom's ground state (Hund's rules), used by
#: :meth:`Labeller.isolated_atom_energies`. Elements not listed get 1 (even number
#: of electrons) or 2 (odd).
GROUND_STATE_MULTIPLICITY: dict[str, int] = {
    "H": 2, "He": 1, "Li": 2, "Be": 1, "B": 2, "C": 3, "N": 4, "O": 3, "F": 2, "Ne": 1,
    "Na": 2, "Mg": 1, "Al": 2, "Si": 3, "P": 4, "S": 3, "Cl": 2, "Ar": 1,
    "K": 2, "Ca": 1, "Ga": 2, "Ge": 3, "As": 4, "Se": 3, "Br": 2, "Kr": 1, "I": 2,
}



class LabellerError(ValueError):
    """A labeller is unknown, mis-configured or cannot run here (the message says what is missing)."""


def _multiplicity(symbol: str) -> int:
    if symbol in GROUND_STATE_MULTIPLICITY:
        return GROUND_STATE_MULTIPLICITY[symbol]
    return 2 if atomic_numbers[symbol] % 2 else 1


def _check_elements_known(elements) -> list[str]:
    out = []
    for e in elements:
        if str(e) not in atomic_numbers or str(e) == "X":
            raise LabellerError(f"isolated_atom_energies: unknown element {e!r}")
        out.append(str(e))
    return out


class Labeller:
    """Abstract labeller: one reference method with fixed settings.

    Subclasses set :attr:`name` and :attr:`defaults` (the known options and their
    defaults) and implement :meth:`calculator` and :meth:`_atom_calculator`.

    Parameters
    ----------
    options : dict, optional
        Method settings; a key not in :attr:`defaults` raises :class:`LabellerError`.

    Attributes
    ----------
    name : str
        Labeller name, stored per frame in ``Frames.labeller``.
    options : dict
        Defaults updated with the given options.
    last_errors : list of (int, str)
        Frame index and reason of every frame that failed in the last :meth:`label` call.
    """

    name: str = ""
    defaults: dict[str, Any] = {}
    #: What each option takes: "number", "integer", "bool", "bool|number", "string", "list",
    #: "mapping"; a trailing "?" also allows None. Options not listed are not checked.
    option_kinds: dict[str, str] = {}

    def __init__(self, options: dict | None = None) -> None:
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise LabellerError(f"unknown option(s) {', '.join(map(repr, unknown))} for labeller "
                                f"'{self.name}' (known: {', '.join(sorted(self.defaults))})")
        options = {k: self._checked_option(k, v) for k, v in options.items()}
        self.options: dict[str, Any] = {**self.defaults, **options}
        self.last_errors: list[tuple[int, str]] = []

    _KIND_WORDS = {"number": "a number", "integer": "a whole number", "bool": "true or false",
                   "bool|number": "true, false or a number", "string": "a text", "list": "a list",
                   "mapping": "a mapping of keys"}

    def _checked_option(self, key: str, value: Any) -> Any:
        """``value`` of option ``key`` as its kind (:attr:`option_kinds`) takes it — a numeric
        string such as YAML's ``1e-3`` is a number, ``3.0`` a whole number — or a
        :class:`LabellerError` naming ``labeller.options.<key>``."""
        kind = self.option_kinds.get(key)
        if kind is None:
            return value
        nullable = kind.endswith("?")
        kind = kind.rstrip("?")
        if value is None and nullable:
            return value
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = value
            else:
                if not np.isfinite(number):
                    number = value
        ok = False
        if kind == "bool" or (kind == "bool|number" and isinstance(value, bool)):
            ok, value = isinstance(value, bool), value
        elif kind in ("number", "bool|number") and isinstance(number, (int, float)) and not isinstance(number, bool):
            ok, value = True, number
        elif kind == "integer" and isinstance(number, (int, float)) and not isinstance(number, bool) \
                and float(number).is_integer():
            ok, value = True, int(number)
        elif kind == "string":
            ok = isinstance(value, str)
        elif kind == "list":
            ok = isinstance(value, (list, tuple))
        elif kind == "mapping":
            ok = isinstance(value, dict)
        if not ok:
            default = self.defaults.get(key)
            words = self._KIND_WORDS[kind] + (" or null" if nullable else "")
            example = f", e.g. {default}" if default is not None else ""
            raise LabellerError(f"labeller.options.{key}: {value!r} is not {words} (labeller '{self.name}'); "
                                f"give {words}{example}")
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.options!r})"

    # ------------------------------------------------------------ to implement
    def calculator(self) -> Calculator:
        """A fresh ASE calculator configured with this labeller's options."""
        raise NotImplementedError

    def _atom_calculator(self, symbol: str, multiplicity: int) -> Calculator:
        """A fresh calculator for one free neutral atom of ``symbol`` with ``multiplicity``."""
        raise NotImplementedError

    def check_elements(self, symbols: set[str]) -> None:
        """Raise :class:`LabellerError` if this labeller cannot treat the given elements."""

    # --------------------------------------------------------------- common
    def single_point(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        """Energy (eV) and forces (eV/Å) of one structure with a fresh calculator.

        Raises whatever the calculator raises; :class:`ase.calculators.calculator.CalculationFailed`
        for non-finite positions or results.
        """
        if not np.all(np.isfinite(atoms.positions)):
            raise CalculationFailed("positions are not finite (NaN/inf)")
        atoms = atoms.copy()
        atoms.calc = self.calculator()
        energy = float(atoms.get_potential_energy())
        forces = np.array(atoms.get_forces(), dtype=np.float64)
        if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
            raise CalculationFailed("calculator returned non-finite energy or forces")
        return energy, forces

    def label(self, frames: Frames) -> Frames:
        """Label every frame; return a copy with energy, forces, status and labeller filled.

        Parameters
        ----------
        frames : Frames
            Positions in Å. ``source``, ``iteration``, ``extras`` and ``attrs`` are kept.

        Returns
        -------
        Frames
            ``energy`` (eV) and ``forces`` (eV/Å) of each frame; ``status`` ``ok`` or
            ``failed`` (NaN labels); ``labeller`` = :attr:`name` for every frame;
            ``extras["label_seconds"]`` the wall time of each frame (s).

        Raises
        ------
        LabellerError
            Only for a configuration problem common to all frames (e.g. elements the
            labeller has no parameters for); a failing frame never raises.
        """
        out = frames.subset(np.arange(len(frames)))
        symbols = {chemical_symbols[z] for z in out.numbers}
        self.check_elements(symbols)
        n, n_atoms = len(out), out.n_atoms
        out.energy = np.full(n, np.nan)
        out.forces = np.full((n, n_atoms, 3), np.nan)
        out.status = np.array([STATUS_FAILED] * n, dtype=object)
        out.labeller = np.array([self.name] * n, dtype=object)
        seconds = np.zeros(n)
        self.last_errors = []
        for i in range(n):
            atoms = Atoms(numbers=out.numbers, positions=out.positions[i], pbc=False)
            t0 = time.perf_counter()
            try:
                energy, forces = self.single_point(atoms)
            except Exception as exc:  # per-frame failure: record and go on
                msg = f"{type(exc).__name__}: {exc}"
                self.last_errors.append((i, msg))
                log.warning("%s: frame %d failed: %s", self.name, i, msg)
            else:
                out.energy[i] = energy
                out.forces[i] = forces
                out.status[i] = STATUS_OK
            seconds[i] = time.perf_counter() - t0
        out.extras["label_seconds"] = seconds
        return out

    def isolated_atom_energies(self, elements: list[str]) -> dict[str, float]:
        """Energy (eV) of each free neutral atom, in its ground-state spin multiplicity.

        The multiplicity is taken from :data:`GROUND_STATE_MULTIPLICITY` (H doublet,
        C triplet, N quartet, O triplet, ...). How spin is treated depends on the
        method; see the subclass. These are meant as per-element reference (self)
        energies of a potential: a constant per element, so any consistent choice works.

        Raises
        ------
        LabellerError
            Unknown element, or the atom calculation fails.
        """
        result: dict[str, float] = {}
        for symbol in _check_elements_known(elements):
            self.check_elements({symbol})
            atoms = Atoms(symbol, positions=[[0.0, 0.0, 0.0]], pbc=False)
            atoms.calc = self._atom_calculator(symbol, _multiplicity(symbol))
            try:
                energy = float(atoms.get_potential_energy())
            except Exception as exc:
                raise LabellerError(f"{self.name}: isolated {symbol} atom calculation failed: "
                                    f"{type(exc).__name__}: {exc}") from exc
            if not np.isfinite(energy):
                raise LabellerError(f"{self.name}: isolated {symbol} atom energy is not finite")
            result[symbol] = energy
        return result
