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

from .base import GROUND_STATE_MULTIPLICITY, Labeller, LabellerError
from .dftb import DFTBLabeller
from .pyscf import PySCFCalculator, PySCFLabeller
from .xtb import XTBLabeller

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

#: Names accepted by :func:`make_labeller`.
LABELLERS: tuple[str, ...] = ("gfn2-xtb", "gfn1-xtb", "dftb+", "pyscf")


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
