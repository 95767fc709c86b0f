"""Units used across rarelearn.

Inside the package everything is eV, Å and fs. kcal/mol appears only in reports.
"""
from ase import units as _ase_units

__all__ = ["EV_PER_KCAL_MOL", "KCAL_MOL_PER_EV", "HARTREE_EV", "ev_to_kcal", "kcal_to_ev"]

#: 1 kcal/mol expressed in eV.
EV_PER_KCAL_MOL: float = _ase_units.kcal / _ase_units.mol
#: 1 eV expressed in kcal/mol.
KCAL_MOL_PER_EV: float = 1.0 / EV_PER_KCAL_MOL
#: 1 Hartree in eV.
HARTREE_EV: float = float(_ase_units.Hartree)


def ev_to_kcal(x):
    """eV → kcal/mol (works on floats and numpy arrays)."""
    return x * KCAL_MOL_PER_EV


def kcal_to_ev(x):
    """kcal/mol → eV (works on floats and numpy arrays)."""
    return x * EV_PER_KCAL_MOL
