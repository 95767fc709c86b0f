"""Reference ("ab initio") labellers behind one interface, chosen by name.

A labeller turns positions into reference energies (eV) and forces (eV/Å)::

    lab = make_labeller("gfn2-xtb", {"electronic_temperature": 300})
    labelled = lab.label(frames)            # a copy; status ok / failed per frame
    e0 = lab.isolated_atom_energies(["H", "C"])

Known labellers (:data:`LABELLERS`):

``gfn2-xtb``, ``gfn1-xtb``
    tblite's ASE calculator (the default reference method of rarelearn).
``dftb+``
    DFTB3/3OB through ASE's ``Dftb`` file-I/O calculator; needs a ``dftb+`` binary
    and the 3ob Slater-Koster files.
``pyscf``
    Kohn-Sham DFT with PySCF (RKS, or UKS when ``spin != 0``) and analytic gradients.

Failures: :meth:`Labeller.label` never raises for one bad frame. A frame whose
positions are not finite, whose SCF does not converge, whose calculation raises,
or whose energy/forces come back NaN/inf gets status ``failed`` and NaN labels;
the reason is logged (logger ``rarelearn.chem.labellers``) and kept in
``Labeller.last_errors``. tblite signals a non-converged SCF by raising
``ase.calculators.calculator.CalculationFailed("SCF not converged in N cycles")``;
coincident atoms raise ``InputError("Too close interatomic distances found")``;
NaN positions raise ``CalculationFailed("(sygvd) failed to solve eigenvalue problem...")``.
"""
from __future__ import annotations

import logging
import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import (
    CalculationFailed,
    Calculator,
    all_changes,
)
from ase.data import atomic_numbers, chemical_symbols
from ase.units import Bohr, Hartree

from ..dataset import STATUS_FAILED, STATUS_OK, Frames

__all__ = [
    "LABELLERS",
    "GROUND_STATE_MULTIPLICITY",
    "LabellerError",
    "Labeller",
    "XTBLabeller",
    "DFTBLabeller",
    "PySCFLabeller",
    "PySCFCalculator",
    "make_labeller",
]

log = logging.getLogger(__name__)

#: Names accepted by :func:`make_labeller`.
LABELLERS: tuple[str, ...] = ("gfn2-xtb", "gfn1-xtb", "dftb+", "pyscf")

#: Spin multiplicity 2S+1 of the free atom's ground state (Hund's rules), used by
#: :meth:`Labeller.isolated_atom_energies`. Elements not listed get 1 (even number
#: of electrons) or 2 (odd).
GROUND_STATE_MULTIPLICITY: dict[str, int] = {
    "H": 2, "He": 1, "Li": 2, "Be": 1, "B": 2, "C": 3, "N": 4, "O": 3, "F": 2, "Ne": 1,
    "Na": 2, "Mg": 1, "Al": 2, "Si": 3, "P": 4, "S": 3, "Cl": 2, "Ar": 1,
    "K": 2, "Ca": 1, "Ga": 2, "Ge": 3, "As": 4, "Se": 3, "Br": 2, "Kr": 1, "I": 2,
}

#: DFTB3/3OB Hubbard derivatives (a.u.), from the 3ob-3-1 set.
HUBBARD_DERIVS_3OB: dict[str, float] = {
    "H": -0.1857, "C": -0.1492, "N": -0.1535, "O": -0.1575,
    "F": -0.1623, "P": -0.14, "S": -0.11, "Cl": -0.0697, "Br": -0.0573, "I": -0.0433,
    "Mg": -0.02, "Na": -0.0454, "K": -0.0339, "Ca": -0.0340, "Zn": -0.03,
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


# ------------------------------------------------------------------ xTB
class XTBLabeller(Labeller):
    """GFN2-xTB or GFN1-xTB through ``tblite.ase.TBLite``.

    Options
    -------
    electronic_temperature : float, K (300)
    spin_polarization : bool or float (False = closed shell, like the paper's DFTB;
        True = scaling 1.0)
    multiplicity : int (1), charge : int (0)
    max_iterations : int (250) SCF cycles; not converging makes the frame ``failed``
    accuracy : float (1.0)
    threads : int or None; sets ``OMP_NUM_THREADS`` before the first calculator
        (tblite's OpenMP reads it once, when first used in the process).

    Isolated atoms are computed spin-polarised (scaling 1.0) in their ground-state
    multiplicity, whatever ``spin_polarization`` is: without spin polarisation xTB
    puts a high-spin atom above its low-spin one (C: triplet -48.80 eV vs singlet
    -48.85 eV, GFN2), which is not a proper free atom. Spin-polarised GFN2 gives
    H -11.68, C -50.03, N -74.02, O -104.04 eV.
    """

    defaults = {
        "electronic_temperature": 300.0,
        "spin_polarization": False,
        "multiplicity": 1,
        "charge": 0,
        "max_iterations": 250,
        "accuracy": 1.0,
        "threads": None,
    }
    option_kinds = {"electronic_temperature": "number", "spin_polarization": "bool|number?",
                    "multiplicity": "integer", "charge": "integer", "max_iterations": "integer",
                    "accuracy": "number", "threads": "integer?"}
    _METHODS = {"gfn2-xtb": "GFN2-xTB", "gfn1-xtb": "GFN1-xTB"}

    def __init__(self, name: str = "gfn2-xtb", options: dict | None = None) -> None:
        if name not in self._METHODS:
            raise LabellerError(f"XTBLabeller: unknown method {name!r} (known: {', '.join(self._METHODS)})")
        self.name = name
        super().__init__(options)
        try:
            import tblite.ase  # noqa: F401
        except ImportError as exc:
            raise LabellerError(f"labeller '{name}' needs the tblite Python package "
                                f"(pip install tblite): {exc}") from exc
        o = self.options
        if float(o["electronic_temperature"]) <= 0:
            raise LabellerError(f"labeller.options.electronic_temperature: {o['electronic_temperature']} K is out "
                                f"of range, it must be > 0 K ({name})")
        if int(o["multiplicity"]) < 1:
            raise LabellerError(f"labeller.options.multiplicity: {o['multiplicity']} is out of range, it must be "
                                f">= 1 ({name})")
        if int(o["max_iterations"]) < 1:
            raise LabellerError(f"labeller.options.max_iterations: {o['max_iterations']} is out of range, it must "
                                f"be >= 1 ({name})")
        if float(o["accuracy"]) <= 0:
            raise LabellerError(f"labeller.options.accuracy: {o['accuracy']} is out of range, it must be > 0 "
                                f"({name})")
        if o["threads"] is not None:
            os.environ["OMP_NUM_THREADS"] = str(int(o["threads"]))

    def _spin(self) -> float | None:
        sp = self.options["spin_polarization"]
        if sp is None or sp is False:
            return None
        if sp is True:
            return 1.0
        return float(sp) if float(sp) != 0.0 else None

    def _tblite(self, **overrides) -> Calculator:
        from tblite.ase import TBLite

        o = self.options
        kwargs = dict(
            method=self._METHODS[self.name],
            verbosity=0,
            electronic_temperature=float(o["electronic_temperature"]),
            max_iterations=int(o["max_iterations"]),
            accuracy=float(o["accuracy"]),
            charge=int(o["charge"]),
            multiplicity=int(o["multiplicity"]),
            spin_polarization=self._spin(),
        )
        kwargs.update(overrides)
        return TBLite(**kwargs)

    def calculator(self) -> Calculator:
        """A fresh ``TBLite`` calculator (verbosity 0) with this labeller's options."""
        return self._tblite()

    def _atom_calculator(self, symbol: str, multiplicity: int) -> Calculator:
        return self._tblite(charge=0, multiplicity=multiplicity, spin_polarization=1.0)


# ------------------------------------------------------------------ DFTB+
class DFTBLabeller(Labeller):
    """DFTB3/3OB through ASE's ``Dftb`` file-I/O calculator (needs a ``dftb+`` binary).

    Options
    -------
    command : str
        How to run DFTB+ (default: env ``ASE_DFTB_COMMAND``, else ``dftb+``);
        ``> PREFIX.out`` is appended when the command has no redirection.
    skf_dir : str
        Directory of the Slater-Koster files ``X-Y.skf`` (default: env ``DFTB_PREFIX``).
    elements : list of str (["H", "C"])
        Elements whose Slater-Koster pairs are checked at construction.
    third_order : bool (True)  DFTB3 (``ThirdOrderFull``); False gives DFTB2.
    hubbard_derivs : dict element -> a.u. (3ob values for H, C, N, O, ...)
    damp_xh_exponent : float or None (4.0, 3ob's value; None switches the X–H damping
        (``DampXH``) off)
    scc_tolerance : float (1e-7), max_iterations : int (250)
    electronic_temperature : float, K (300), charge : int (0)
    workdir : str or None  parent directory for the calculation folders (default: system temp)

    DFTB+ stops with an error when the SCC does not converge (its default
    ``ConvergentSCCOnly = Yes``); ASE turns that into ``CalculationFailed`` and the
    frame becomes ``failed``. Isolated atoms are computed without spin polarisation
    (3OB comes without spin constants); the multiplicity only enters as the
    occupation given by the Fermi filling.
    """

    name = "dftb+"
    defaults = {
        "command": None,
        "skf_dir": None,
        "elements": ("H", "C"),
        "third_order": True,
        "hubbard_derivs": None,
        "damp_xh_exponent": 4.0,
        "scc_tolerance": 1e-7,
        "max_iterations": 250,
        "electronic_temperature": 300.0,
        "charge": 0,
        "workdir": None,
    }
    option_kinds = {"command": "string?", "skf_dir": "string?", "elements": "list", "third_order": "bool",
                    "hubbard_derivs": "mapping?", "damp_xh_exponent": "number?", "scc_tolerance": "number",
                    "max_iterations": "integer", "electronic_temperature": "number", "charge": "integer",
                    "workdir": "string?"}

    def __init__(self, options: dict | None = None) -> None:
        super().__init__(options)
        o = self.options
        command = o["command"] or os.environ.get("ASE_DFTB_COMMAND") or "dftb+"
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise LabellerError(f"dftb+: cannot parse command {command!r}: {exc}") from exc
        binary = argv[0] if argv else ""
        found = shutil.which(binary) if binary else None
        if found is None:
            raise LabellerError(f"dftb+ binary '{binary}' not found on PATH "
                                "(set labeller.options.command or install DFTB+)")
        self.command = command if ">" in command else f"{command} > PREFIX.out"
        skf_dir = o["skf_dir"] or os.environ.get("DFTB_PREFIX")
        if not skf_dir:
            raise LabellerError("dftb+: no Slater-Koster directory given "
                                "(set labeller.options.skf_dir or the DFTB_PREFIX environment variable)")
        self.skf_dir = Path(skf_dir).expanduser()
        if not self.skf_dir.is_dir():
            raise LabellerError(f"dftb+: Slater-Koster directory {self.skf_dir} does not exist "
                                "(set labeller.options.skf_dir)")
        self.hubbard_derivs = {**HUBBARD_DERIVS_3OB, **(o["hubbard_derivs"] or {})}
        self.check_elements(set(o["elements"]))

    def check_elements(self, symbols: set[str]) -> None:
        """Raise :class:`LabellerError` naming the first missing ``X-Y.skf`` (or Hubbard derivative)."""
        symbols = sorted(symbols)
        missing = [f"{a}-{b}.skf" for a in symbols for b in symbols
                   if not (self.skf_dir / f"{a}-{b}.skf").is_file()]
        if missing:
            more = f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""
            raise LabellerError(f"Slater-Koster file {missing[0]} not found in {self.skf_dir} "
                                f"(set labeller.options.skf_dir){more}")
        if self.options["third_order"]:
            no_u = [s for s in symbols if s not in self.hubbard_derivs]
            if no_u:
                raise LabellerError(f"dftb+: no Hubbard derivative for {', '.join(no_u)} "
                                    "(set labeller.options.hubbard_derivs)")

    def _parameters(self, symbols: set[str], charge: int) -> dict[str, Any]:
        o = self.options
        p: dict[str, Any] = {
            "Hamiltonian_SCC": "Yes",
            "Hamiltonian_SCCTolerance": float(o["scc_tolerance"]),
            "Hamiltonian_MaxSCCIterations": int(o["max_iterations"]),
            "Hamiltonian_Charge": float(charge),
            "Hamiltonian_Filling_": "Fermi",
            "Hamiltonian_Filling_Temperature [Kelvin]": float(o["electronic_temperature"]),
        }
        if o["third_order"]:
            p["Hamiltonian_ThirdOrderFull"] = "Yes"
            p["Hamiltonian_HubbardDerivs_"] = ""
            for s in sorted(symbols):
                p[f"Hamiltonian_HubbardDerivs_{s}"] = float(self.hubbard_derivs[s])
        if o["damp_xh_exponent"] is not None:
            # ASE declares ParserVersion = 1, so use that version's keywords (DFTB+
            # converts them to today's HCorrection = Damping {Exponent}).
            p["Hamiltonian_DampXH"] = "Yes"
            p["Hamiltonian_DampXHExponent"] = float(o["damp_xh_exponent"])
        return p

    def _dftb(self, symbols: set[str], charge: int) -> Calculator:
        from ase.calculators.dftb import Dftb

        directory = tempfile.mkdtemp(prefix="rarelearn-dftb-", dir=self.options["workdir"])
        return Dftb(label="dftb", directory=directory, command=self.command,
                    slako_dir=str(self.skf_dir) + os.sep,
                    **self._parameters(symbols, charge))

    def calculator(self) -> Calculator:
        """A fresh ``Dftb`` calculator (own temporary directory) for the configured elements."""
        return self._dftb(set(self.options["elements"]), int(self.options["charge"]))

    def single_point(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        if not np.all(np.isfinite(atoms.positions)):
            raise CalculationFailed("positions are not finite (NaN/inf)")
        atoms = atoms.copy()
        calc = self._dftb(set(atoms.get_chemical_symbols()), int(self.options["charge"]))
        atoms.calc = calc
        try:
            energy = float(atoms.get_potential_energy())
            forces = np.array(atoms.get_forces(), dtype=np.float64)
        finally:
            shutil.rmtree(calc.directory, ignore_errors=True)
        if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
            raise CalculationFailed("DFTB+ returned non-finite energy or forces")
        return energy, forces

    def _atom_calculator(self, symbol: str, multiplicity: int) -> Calculator:
        calc = self._dftb({symbol}, 0)
        self._atom_dirs.append(calc.directory)
        return calc

    def isolated_atom_energies(self, elements: list[str]) -> dict[str, float]:
        self._atom_dirs: list[str] = []
        try:
            return super().isolated_atom_energies(elements)
        finally:
            for d in self._atom_dirs:
                shutil.rmtree(d, ignore_errors=True)

    isolated_atom_energies.__doc__ = Labeller.isolated_atom_energies.__doc__


# ------------------------------------------------------------------ PySCF
class PySCFCalculator(Calculator):
    """Minimal ASE calculator: PySCF Kohn-Sham DFT energy and analytic forces.

    RKS for ``spin == 0``, UKS otherwise (``spin`` = 2S = N_alpha - N_beta).
    Units: energy eV, forces eV/Å (PySCF's Hartree and Bohr converted).
    A non-converged SCF raises :class:`ase.calculators.calculator.CalculationFailed`.

    Parameters (keywords)
    ---------------------
    functional : str ("wb97x"), basis : str ("6-31g*"), conv_tol : float, Hartree (1e-9),
    max_cycle : int (100), charge : int (0), spin : int (0),
    grid_response : bool (True) include the integration-grid response in the
    gradient (forces then match finite differences of the energy),
    grid_level : int or None (PySCF default 3)
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    default_parameters = {
        "functional": "wb97x",
        "basis": "6-31g*",
        "conv_tol": 1e-9,
        "max_cycle": 100,
        "charge": 0,
        "spin": 0,
        "grid_response": True,
        "grid_level": None,
    }

    def calculate(self, atoms: Atoms | None = None, properties=None,
                  system_changes=all_changes) -> None:
        Calculator.calculate(self, atoms, properties or ["energy"], system_changes)
        from pyscf import dft, gto

        p = self.parameters
        a = self.atoms
        if not np.all(np.isfinite(a.positions)):
            raise CalculationFailed("positions are not finite (NaN/inf)")
        try:
            mol = gto.M(atom=[(s, tuple(x)) for s, x in zip(a.get_chemical_symbols(), a.positions)],
                        unit="Angstrom", basis=p.basis, charge=int(p.charge), spin=int(p.spin),
                        verbose=0)
        except RuntimeError as exc:  # e.g. charge/spin inconsistent with the electrons
            raise CalculationFailed(f"pyscf: cannot build molecule: {exc}") from exc
        mf = dft.RKS(mol) if int(p.spin) == 0 else dft.UKS(mol)
        mf.xc = p.functional
        mf.conv_tol = float(p.conv_tol)
        mf.max_cycle = int(p.max_cycle)
        mf.verbose = 0
        if p.grid_level is not None:
            mf.grids.level = int(p.grid_level)
        energy = mf.kernel()
        if not mf.converged:
            raise CalculationFailed(f"pyscf SCF not converged in {p.max_cycle} cycles")
        self.results["energy"] = float(energy) * Hartree
        self.results["free_energy"] = self.results["energy"]
        if "forces" in (properties or []):
            grad = mf.nuc_grad_method()
            grad.verbose = 0
            grad.grid_response = bool(p.grid_response)
            self.results["forces"] = -np.asarray(grad.kernel()) * Hartree / Bohr


class PySCFLabeller(Labeller):
    """Kohn-Sham DFT with PySCF (see :class:`PySCFCalculator`).

    Options
    -------
    functional ("wb97x"), basis ("6-31g*"), conv_tol (1e-9 Hartree), max_cycle (100),
    charge (0), spin (0 = closed shell RKS; 2S otherwise, UKS), grid_response (True),
    grid_level (None), threads (None: PySCF's default; else ``pyscf.lib.num_threads``).

    Isolated atoms: UKS in the ground-state multiplicity (``spin`` = multiplicity - 1).
    """

    name = "pyscf"
    defaults = {**PySCFCalculator.default_parameters, "threads": None}
    option_kinds = {"functional": "string", "basis": "string", "conv_tol": "number", "max_cycle": "integer",
                    "charge": "integer", "spin": "integer", "grid_response": "bool", "grid_level": "integer?",
                    "threads": "integer?"}

    def __init__(self, options: dict | None = None) -> None:
        super().__init__(options)
        try:
            import pyscf  # noqa: F401
            from pyscf import lib
        except ImportError as exc:
            raise LabellerError(f"labeller 'pyscf' needs the pyscf package (pip install pyscf): {exc}") from exc
        if self.options["threads"] is not None:
            lib.num_threads(int(self.options["threads"]))

    def _params(self, **overrides) -> dict[str, Any]:
        p = {k: v for k, v in self.options.items() if k != "threads"}
        p.update(overrides)
        return p

    def calculator(self) -> Calculator:
        """A fresh :class:`PySCFCalculator` with this labeller's options."""
        return PySCFCalculator(**self._params())

    def _atom_calculator(self, symbol: str, multiplicity: int) -> Calculator:
        return PySCFCalculator(**self._params(charge=0, spin=multiplicity - 1))


# ------------------------------------------------------------------ factory
def make_labeller(name: str, options: dict | None = None) -> Labeller:
    """The labeller called ``name`` (one of :data:`LABELLERS`, case-insensitive).

    Parameters
    ----------
    name : str
        ``"gfn2-xtb"``, ``"gfn1-xtb"``, ``"dftb+"`` or ``"pyscf"``.
    options : dict, optional
        Method options (see each labeller class); unknown keys raise.

    Raises
    ------
    LabellerError
        Unknown name (the message lists the known ones), unknown option key, or a
        missing program/parameter file.
    """
    key = str(name).strip().lower()
    if options is not None and not isinstance(options, dict):
        raise LabellerError(f"options for labeller '{key}' must be a mapping, got {type(options).__name__}")
    if key in ("gfn2-xtb", "gfn1-xtb"):
        return XTBLabeller(key, options)
    if key == "dftb+":
        return DFTBLabeller(options)
    if key == "pyscf":
        return PySCFLabeller(options)
    raise LabellerError(f"unknown labeller {name!r}; known labellers: {', '.join(LABELLERS)}")
