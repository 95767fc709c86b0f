"""DFTB3/3OB through ASE's ``Dftb`` file-I/O calculator (needs a ``dftb+`` binary and the
3ob Slater-Koster files; the paper's reference method)."""
from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, Calculator

from .base import Labeller, LabellerError

__all__ = ["DFTBLabeller", "HUBBARD_DERIVS_3OB"]

#: DFTB3/3OB Hubbard derivatives (a.u.), from the 3ob-3-1 set.
HUBBARD_DERIVS_3OB: dict[str, float] = {
    "H": -0.1857, "C": -0.1492, "N": -0.1535, "O": -0.1575,
    "F": -0.1623, "P": -0.14, "S": -0.11, "Cl": -0.0697, "Br": -0.0573, "I": -0.0433,
    "Mg": -0.02, "Na": -0.0454, "K": -0.0339, "Ca": -0.0340, "Zn": -0.03,
}


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
