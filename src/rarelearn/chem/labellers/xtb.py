"""GFN2-xTB and GFN1-xTB through tblite's ASE calculator (the default reference method)."""
from __future__ import annotations

import os

from ase.calculators.calculator import Calculator

from .base import Labeller, LabellerError

__all__ = ["XTBLabeller"]


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
