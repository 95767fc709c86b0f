"""Kohn-Sham DFT with PySCF (RKS, or UKS when ``spin != 0``) and analytic gradients."""
from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, Calculator, all_changes
from ase.units import Bohr, Hartree

from .base import Labeller, LabellerError

__all__ = ["PySCFCalculator", "PySCFLabeller"]


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
