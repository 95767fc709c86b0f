"""Tests of rarelearn.chem.molecules: alkane builder and molecule specs (real GFN2-xTB relaxations)."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule
from ase.io import write

from rarelearn.chem.molecules import (ALKANE_NAMES, Molecule, MoleculeError, build_alkane, load_molecule,
                                      terminal_carbons)


@pytest.fixture(scope="module")
def alkanes():
    return {n: build_alkane(n) for n in (2, 4, 6)}


@pytest.mark.parametrize("n", [2, 4, 6])
def test_build_alkane_composition_and_order(alkanes, n):
    atoms = alkanes[n]
    assert atoms.get_chemical_formula(mode="hill") == f"C{n}H{2 * n + 2}"
    symbols = atoms.get_chemical_symbols()
    assert symbols[:n] == ["C"] * n and symbols[n:] == ["H"] * (2 * n + 2)
    assert atoms.info["pull_groups"] == [[0], [n - 1]]
    assert atoms.info["name"] == ALKANE_NAMES[n]
    assert not atoms.pbc.any()
    assert atoms.calc is None
    assert terminal_carbons(atoms) == (0, n - 1)
    # Chain order: consecutive carbons are bonded.
    for i in range(n - 1):
        assert 1.45 < atoms.get_distance(i, i + 1) < 1.6
    # No two atoms too close.
    d = atoms.get_all_distances()
    np.fill_diagonal(d, np.inf)
    assert d.min() > 1.0


@pytest.mark.parametrize("n", [4, 6])
def test_build_alkane_all_trans(alkanes, n):
    atoms = alkanes[n]
    for i in range(n - 3):
        dihedral = atoms.get_dihedral(i, i + 1, i + 2, i + 3)
        assert abs(abs(dihedral - 180.0)) < 2.0


def test_end_to_end_grows_with_chain(alkanes):
    ends = [alkanes[n].get_distance(0, n - 1) for n in (2, 4, 6)]
    assert ends[0] < ends[1] < ends[2]
    assert 6.0 < ends[2] < 6.7  # hexane, all-trans, ~6.4 Å


def test_relaxed_forces_small(alkanes):
    from tblite.ase import TBLite

    for n, atoms in alkanes.items():
        a = atoms.copy()
        a.calc = TBLite(method="GFN2-xTB", verbosity=0)
        fmax = np.linalg.norm(a.get_forces(), axis=1).max()
        assert fmax < 0.03, (n, fmax)


def test_unrelaxed_geometry_is_sane():
    atoms = build_alkane(11, relax=False)
    assert atoms.get_chemical_formula(mode="hill") == "C11H24"
    assert atoms.info["name"] == "undecane"
    d = atoms.get_all_distances()
    np.fill_diagonal(d, np.inf)
    assert d.min() > 1.0


@pytest.mark.parametrize("bad", [1, 12, 0, -3, 2.5, "6", True])
def test_build_alkane_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match=repr(bad).replace(".", r"\.")):
        build_alkane(bad, relax=False)


def test_terminal_carbons_after_reordering():
    atoms = build_alkane(5, relax=False)
    perm = np.random.default_rng(1).permutation(len(atoms))
    shuffled = atoms[perm]
    i, j = terminal_carbons(shuffled)
    inverse = np.argsort(perm)
    assert sorted([inverse[0], inverse[4]]) == [i, j]


def test_terminal_carbons_branched_refused():
    with pytest.raises(MoleculeError, match="expected 2"):
        terminal_carbons(molecule("isobutane"))


# ------------------------------------------------------------------ load_molecule
def test_load_alkane_spec():
    mol = load_molecule({"alkane": 3, "relax": False}, elements=["H", "C"])
    assert isinstance(mol, Molecule)
    assert mol.name == "propane"
    assert (mol.group1, mol.group2) == ([0], [2])
    assert mol.atoms.info["pull_groups"] == [[0], [2]]


def test_load_alkane_bad_n():
    with pytest.raises(MoleculeError, match="n_carbons=13"):
        load_molecule({"alkane": 13})


def test_structure_round_trip(tmp_path):
    atoms = molecule("C2H6")
    path = tmp_path / "ethane.xyz"
    write(path, atoms)
    mol = load_molecule({"structure": str(path), "pull": [[0, 2], [1]]}, elements=["C", "H"])
    assert mol.name == "ethane"
    assert mol.group1 == [0, 2] and mol.group2 == [1]
    assert mol.atoms.get_chemical_symbols() == atoms.get_chemical_symbols()
    np.testing.assert_allclose(mol.atoms.positions, atoms.positions, atol=1e-6)
    assert mol.atoms.info["pull_groups"] == [[0, 2], [1]]
    # relative path + base_dir, explicit name
    mol2 = load_molecule({"structure": "ethane.xyz", "pull": [[0], [1]], "name": "c2", "relax": True},
                         base_dir=tmp_path)  # relax is ignored for a structure
    np.testing.assert_allclose(mol2.atoms.positions, atoms.positions, atol=1e-6)
    assert mol2.name == "c2"


def test_structure_other_format(tmp_path):
    path = tmp_path / "water.extxyz"
    write(path, molecule("H2O"), format="extxyz")
    mol = load_molecule({"structure": path, "pull": [[1], [2]]})
    assert len(mol.atoms) == 3


def test_missing_file(tmp_path):
    missing = tmp_path / "nothere.xyz"
    with pytest.raises(MoleculeError, match="nothere.xyz.*not found"):
        load_molecule({"structure": str(missing), "pull": [[0], [1]]})


def test_unreadable_file(tmp_path):
    path = tmp_path / "garbage.xyz"
    path.write_text("this is not\nan xyz file at all\n")
    with pytest.raises(MoleculeError, match="garbage.xyz.*could not be read"):
        load_molecule({"structure": str(path), "pull": [[0], [1]]})


@pytest.fixture
def ethane_file(tmp_path):
    path = tmp_path / "ethane.xyz"
    write(path, molecule("C2H6"))
    return str(path)


def test_missing_pull(ethane_file):
    with pytest.raises(MoleculeError, match="missing 'pull'"):
        load_molecule({"structure": ethane_file})


@pytest.mark.parametrize("pull, pattern", [
    ([[0], [8]], "pull index 8 .*out of range.*8 atoms"),
    ([[-1], [2]], "pull index -1"),
    ([[0], [0]], "same atoms"),
    ([[0, 1], [1, 2]], r"overlap at atom\(s\) \[1\]"),
    ([[0], []], "pull group 2 must be a non-empty"),
    ([[0]], "two atom groups"),
    ([[0], ["a"]], "'a', not an integer"),
    ([[0, 0], [1]], "lists atom 0 twice"),
])
def test_bad_pull(ethane_file, pull, pattern):
    with pytest.raises(MoleculeError, match=pattern):
        load_molecule({"structure": ethane_file, "pull": pull})


def test_elements_not_covered(tmp_path):
    path = tmp_path / "mix.xyz"
    write(path, molecule("CH3CH2OH"))
    with pytest.raises(MoleculeError, match="element\\(s\\) O "):
        load_molecule({"structure": str(path), "pull": [[0], [1]]}, elements=["H", "C"])
    path2 = tmp_path / "gly.xyz"
    write(path2, molecule("CH3CONH2"))
    with pytest.raises(MoleculeError, match="O, N|N, O"):
        load_molecule({"structure": str(path2), "pull": [[0], [1]]}, elements=["H", "C"])


@pytest.mark.parametrize("spec, pattern", [
    ({"alkane": 6, "structure": "x.xyz"}, "exactly one of"),
    ({}, "exactly one of"),
    ({"alkane": 6, "pul": [[0], [5]]}, r"unknown key\(s\) \['pul'\]"),
    ({"structure": "x.xyz", "relaxed": True, "pull": [[0], [1]]}, r"unknown key\(s\) \['relaxed'\]"),
    ("hexane", "must be a mapping"),
])
def test_bad_spec(spec, pattern):
    with pytest.raises(MoleculeError, match=pattern):
        load_molecule(spec)


def test_alkane_elements_not_covered():
    with pytest.raises(MoleculeError, match=r"element\(s\) C "):
        load_molecule({"alkane": 2, "relax": False}, elements=["H"])
