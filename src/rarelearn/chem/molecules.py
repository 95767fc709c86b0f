"""Molecules to pull apart: n-alkanes built from scratch, or any structure file.

A :class:`Molecule` is an isolated (non-periodic) structure plus the two atom groups
that the steered-MD spring joins. Units: Å (positions), eV, eV/Å.

Two ways to get one (see :func:`load_molecule`)::

    {"alkane": 6}                                   # hexane, pulled at C0 and C5
    {"alkane": 6, "relax": False}                   # unrelaxed ideal geometry
    {"structure": "mol.xyz", "pull": [[0], [5]]}    # any file ase.io.read reads
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

__all__ = [
    "ALKANE_NAMES",
    "MoleculeError",
    "Molecule",
    "build_alkane",
    "load_molecule",
    "terminal_carbons",
    "write_prepared_molecule",
    "load_prepared_molecule",
]

log = logging.getLogger(__name__)

#: Names of the n-alkanes CnH2n+2 that :func:`build_alkane` makes, by number of carbons.
ALKANE_NAMES: dict[int, str] = {
    2: "ethane", 3: "propane", 4: "butane", 5: "pentane", 6: "hexane",
    7: "heptane", 8: "octane", 9: "nonane", 10: "decane", 11: "undecane",
}

# Ideal geometry of the starting chain (relaxed afterwards with GFN2-xTB).
_CC = 1.53          # Å, C–C bond
_CH = 1.09          # Å, C–H bond
_CCC = 112.0        # degrees, C–C–C angle of the zig-zag
_HCH = 107.5        # degrees, H–C–H angle of a CH2 group
_CC_BOND_CUTOFF = 1.9  # Å, two carbons closer than this are bonded (terminal_carbons)


class MoleculeError(ValueError):
    """A molecule specification or structure file cannot be used (the message names the culprit)."""


@dataclass
class Molecule:
    """An isolated molecule and the two atom groups the pulling spring joins.

    Attributes
    ----------
    atoms : ase.Atoms
        Structure, positions in Å, non-periodic.
    group1, group2 : list of int
        0-based atom indices of the two pulled groups (non-empty, disjoint).
    name : str
        Short name, e.g. ``"hexane"`` or the structure file's stem.
    """

    atoms: Atoms
    group1: list[int]
    group2: list[int]
    name: str


# ---------------------------------------------------------------------- alkanes
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _zigzag_carbon(i: int) -> np.ndarray:
    """Position (Å) of carbon ``i`` of an ideal all-trans chain in the xy plane (any integer i)."""
    half = np.radians(_CCC) / 2.0
    return np.array([i * _CC * np.sin(half), (i % 2) * _CC * np.cos(half), 0.0])


def _ideal_alkane(n: int) -> Atoms:
    carbons = [_zigzag_carbon(i) for i in range(n)]
    z = np.array([0.0, 0.0, 1.0])
    phi = np.radians(_HCH) / 2.0
    hydrogens = []
    for i in range(n):
        c = carbons[i]
        # Chain ends get a "virtual" neighbour where the zig-zag would continue:
        # the methyl's in-plane H points there (anti to the chain: all-trans, staggered).
        left = carbons[i - 1] if i > 0 else _zigzag_carbon(-1)
        right = carbons[i + 1] if i < n - 1 else _zigzag_carbon(n)
        if i == 0:
            hydrogens.append(c + _CH * _unit(left - c))
        bisector = _unit(_unit(left - c) + _unit(right - c))
        for sign in (1.0, -1.0):
            hydrogens.append(c + _CH * (-bisector * np.cos(phi) + sign * z * np.sin(phi)))
        if i == n - 1:
            hydrogens.append(c + _CH * _unit(right - c))
    symbols = "C" * n + "H" * len(hydrogens)
    atoms = Atoms(symbols, positions=np.array(carbons + hydrogens), pbc=False)
    atoms.positions -= atoms.get_center_of_mass()
    return atoms


def build_alkane(n_carbons: int, relax: bool = True, fmax: float = 0.02, steps: int = 1000) -> Atoms:
    """Build the all-trans n-alkane CnH2n+2.

    Parameters
    ----------
    n_carbons : int
        Number of carbons, 2..11 (ethane .. undecane).
    relax : bool
        Relax the ideal zig-zag geometry with GFN2-xTB (tblite, closed shell) and
        BFGS down to ``fmax``.
    fmax : float
        Force convergence criterion of the relaxation, eV/Å.
    steps : int
        Maximum number of optimiser steps (a warning is logged if not converged).

    Returns
    -------
    ase.Atoms
        Carbons first (indices 0..n-1 in chain order), then hydrogens (grouped by
        carbon, in chain order); positions in Å, centred at the centre of mass,
        non-periodic, no calculator attached. ``info["pull_groups"] = [[0], [n-1]]``
        (the terminal carbons) and ``info["name"]`` (e.g. ``"hexane"``).

    Raises
    ------
    ValueError
        ``n_carbons`` outside 2..11.
    """
    if isinstance(n_carbons, bool) or not isinstance(n_carbons, (int, np.integer)) \
            or int(n_carbons) not in ALKANE_NAMES:
        raise ValueError(f"alkane with n_carbons={n_carbons!r} is not supported: "
                         f"choose an integer from 2 to 11 (ethane .. undecane)")
    n = int(n_carbons)
    atoms = _ideal_alkane(n)
    if relax:
        from ase.optimize import BFGS
        from tblite.ase import TBLite

        atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
        opt = BFGS(atoms, logfile=None, maxstep=0.1)
        converged = opt.run(fmax=fmax, steps=steps)
        if not converged:
            fmax_now = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
            log.warning("relaxation of %s stopped after %d steps with max force %.3g eV/Å > %.3g",
                        ALKANE_NAMES[n], steps, fmax_now, fmax)
        atoms.calc = None
        atoms.positions -= atoms.get_center_of_mass()
    atoms.info["pull_groups"] = [[0], [n - 1]]
    atoms.info["name"] = ALKANE_NAMES[n]
    return atoms


def terminal_carbons(atoms: Atoms) -> tuple[int, int]:
    """The two chain-end carbons of a linear alkane, from C–C connectivity.

    Two carbons are bonded when closer than 1.9 Å; a chain end is a carbon with
    exactly one carbon neighbour.

    Returns
    -------
    (i, j) : tuple of int
        Atom indices, i < j.

    Raises
    ------
    MoleculeError
        Not exactly two chain ends (no carbons, branched or cyclic skeleton).
    """
    c_idx = np.flatnonzero(atoms.numbers == 6)
    if len(c_idx) < 2:
        raise MoleculeError(f"terminal_carbons: structure has {len(c_idx)} carbon(s), need a chain of >= 2")
    pos = atoms.positions[c_idx]
    d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    bonded = (d < _CC_BOND_CUTOFF) & ~np.eye(len(c_idx), dtype=bool)
    ends = c_idx[bonded.sum(axis=1) == 1]
    if len(ends) != 2:
        raise MoleculeError(f"terminal_carbons: found {len(ends)} chain-end carbons {ends.tolist()}, "
                            "expected 2 (linear chain); give the pull groups explicitly")
    return int(ends[0]), int(ends[1])


# ---------------------------------------------------------------------- specs
def _check_groups(pull, n_atoms: int, where: str) -> tuple[list[int], list[int]]:
    """Validate ``pull = [[i...], [j...]]`` (0-based) against ``n_atoms``."""
    if not isinstance(pull, (list, tuple)) or len(pull) != 2:
        raise MoleculeError(f"{where}: 'pull' must be two atom groups [[i, ...], [j, ...]] (0-based), "
                            f"got {pull!r}")
    groups = []
    for k, group in enumerate(pull, start=1):
        if isinstance(group, (int, np.integer)) and not isinstance(group, bool):
            group = [group]  # a bare index is a one-atom group
        if not isinstance(group, (list, tuple)) or len(group) == 0:
            raise MoleculeError(f"{where}: pull group {k} must be a non-empty list of atom indices, "
                                f"got {group!r}")
        out = []
        for idx in group:
            if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
                raise MoleculeError(f"{where}: pull group {k} holds {idx!r}, not an integer atom index")
            idx = int(idx)
            if not 0 <= idx < n_atoms:
                raise MoleculeError(f"{where}: pull index {idx} (group {k}) is out of range for "
                                    f"{n_atoms} atoms; use 0-based indices 0..{n_atoms - 1}")
            if idx in out:
                raise MoleculeError(f"{where}: pull group {k} lists atom {idx} twice")
            out.append(idx)
        groups.append(out)
    g1, g2 = groups
    if sorted(g1) == sorted(g2):
        raise MoleculeError(f"{where}: the two pull groups are the same atoms {sorted(g1)}; "
                            "pull two different groups")
    common = sorted(set(g1) & set(g2))
    if common:
        raise MoleculeError(f"{where}: pull groups overlap at atom(s) {common}; "
                            "the two groups must not share atoms")
    return g1, g2


def _check_elements(atoms: Atoms, elements, where: str) -> None:
    if elements is None:
        return
    allowed = {str(e) for e in elements}
    present = list(dict.fromkeys(atoms.get_chemical_symbols()))
    extra = [s for s in present if s not in allowed]
    if extra:
        raise MoleculeError(f"{where}: contains element(s) {', '.join(extra)} that the model does not "
                            f"cover (elements {sorted(allowed)}); add them to the model's elements "
                            "or use another structure")


def load_molecule(spec: dict, elements: list[str] | None = None,
                  base_dir: str | Path | None = None) -> Molecule:
    """Make the molecule a run pulls apart, from a config entry.

    Parameters
    ----------
    spec : dict
        Either ``{"alkane": n}`` (optional ``"relax": bool``, default True; optional
        ``"pull"`` overriding the terminal carbons ``[[0], [n-1]]``), or
        ``{"structure": path, "pull": [[i, ...], [j, ...]]}`` with 0-based atom
        indices, each group non-empty, the two disjoint; optional ``"name"``;
        ``"relax"`` is accepted and ignored for a structure (used as given).
        The structure file may be any format ``ase.io.read`` reads; of a
        multi-frame file the last frame is taken (ASE's default). It is treated
        as an isolated molecule (``pbc`` is switched off).
    elements : list of str, optional
        Elements the model covers; a structure holding any other is refused.
    base_dir : path, optional
        Directory relative structure paths are taken from (default: the current one).

    Returns
    -------
    Molecule

    Raises
    ------
    MoleculeError
        With one line naming the culprit and the fix: unknown keys, missing or
        unreadable file, missing/invalid/out-of-range/overlapping pull groups,
        elements not covered.
    """
    if not isinstance(spec, dict):
        raise MoleculeError(f"molecule spec must be a mapping like {{'alkane': 6}} or "
                            f"{{'structure': 'file.xyz', 'pull': [[0], [5]]}}, got {spec!r}")
    has_alkane, has_structure = "alkane" in spec, "structure" in spec
    if has_alkane == has_structure:
        raise MoleculeError("molecule spec needs exactly one of 'alkane' (number of carbons) or "
                            f"'structure' (a file path), got keys {sorted(spec)}")

    if has_alkane:
        unknown = sorted(set(spec) - {"alkane", "relax", "pull", "name"})
        if unknown:
            raise MoleculeError(f"molecule spec: unknown key(s) {unknown} for an alkane "
                                "(allowed: alkane, relax, pull, name)")
        n = spec["alkane"]
        try:
            atoms = build_alkane(n, relax=bool(spec.get("relax", True)))
        except ValueError as exc:
            raise MoleculeError(f"molecule spec 'alkane': {exc}") from exc
        name = str(spec.get("name", atoms.info["name"]))
        where = f"molecule {name}"
        pull = spec.get("pull", atoms.info["pull_groups"])
    else:
        unknown = sorted(set(spec) - {"structure", "pull", "name", "relax"})
        if unknown:
            raise MoleculeError(f"molecule spec: unknown key(s) {unknown} for a structure "
                                "(allowed: structure, pull, name; relax is accepted and ignored)")
        path = Path(spec["structure"]).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        if not path.is_file():
            raise MoleculeError(f"structure file '{path}' not found; set 'structure' to an existing file")
        from ase.io import read

        try:
            atoms = read(path)
        except Exception as exc:  # ASE raises many kinds for bad files
            raise MoleculeError(f"structure file '{path}' could not be read by ase.io.read "
                                f"({type(exc).__name__}: {exc}); give a format ASE reads, e.g. .xyz") from exc
        if isinstance(atoms, list):  # defensive: read() with an index slice
            atoms = atoms[-1]
        if len(atoms) == 0:
            raise MoleculeError(f"structure file '{path}' holds no atoms")
        atoms.pbc = False
        name = str(spec.get("name", path.stem))
        where = f"structure '{path}'"
        if "pull" not in spec:
            raise MoleculeError(f"{where}: missing 'pull' — give the two atom groups the spring joins, "
                                "e.g. \"pull\": [[0], [5]] (0-based atom indices)")
        pull = spec["pull"]

    g1, g2 = _check_groups(pull, len(atoms), where)
    _check_elements(atoms, elements, where)
    atoms.info["pull_groups"] = [list(g1), list(g2)]
    atoms.info["name"] = name
    return Molecule(atoms=atoms, group1=g1, group2=g2, name=name)


def write_prepared_molecule(mol: Molecule, path) -> Path:
    """The workflow's prepared-molecule file: extended XYZ of ``mol.atoms`` with the name
    and the pulled groups in ``atoms.info`` (``name``, ``pull1``, ``pull2``), written
    atomically. Read back with :func:`load_prepared_molecule`."""
    from ase.io import write

    from ..atomic import atomic_path

    atoms = mol.atoms.copy()
    atoms.info = {"name": mol.name, "pull1": " ".join(map(str, mol.group1)),
                  "pull2": " ".join(map(str, mol.group2))}
    with atomic_path(path) as tmp:
        write(tmp, atoms, format="extxyz")
    return Path(path)


def load_prepared_molecule(path):
    """(atoms, group1, group2) from the file :func:`write_prepared_molecule` wrote."""
    from ase.io import read

    atoms = read(path, format="extxyz")
    g1 = [int(x) for x in str(atoms.info["pull1"]).split()]
    g2 = [int(x) for x in str(atoms.info["pull2"]).split()]
    atoms.calc = None
    return atoms, g1, g2
