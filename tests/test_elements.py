"""H, C, N and O alike: bonds, breaks, the bond report and the blow-up rules for every element
pair, on molecules of ASE's G2 set (geometry only: these rules read no energies)."""
from collections import Counter

import numpy as np
import pytest
from ase.build import molecule
from ase.data import covalent_radii
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from rarelearn.chem.breaks import BREAK_SCALE, bond_report, cc_bond_report, find_break
from rarelearn.chem.geometry import covalent_bonds
from rarelearn.md.blowup import BlowUp, BlowUpRules, _Monitor, check_blowup

# molecule -> its bonds by element pair, as a chemist draws them
BONDS = {
    "H3CNH2": {"C-H": 3, "C-N": 1, "H-N": 2},
    "CH3OH": {"C-H": 3, "C-O": 1, "H-O": 1},
    "N2H4": {"H-N": 4, "N-N": 1},
    "H2O2": {"H-O": 2, "O-O": 1},
    "CH3ONO": {"C-H": 3, "C-O": 1, "N-O": 2},
    "CH3NO2": {"C-H": 3, "C-N": 1, "N-O": 2},
    "HCN": {"C-H": 1, "C-N": 1},
    "CH3CH2OH": {"C-C": 1, "C-H": 5, "C-O": 1, "H-O": 1},
    "H2": {"H-H": 1},
}


def _kinds(atoms, pairs) -> Counter:
    s = atoms.get_chemical_symbols()
    return Counter("-".join(sorted((s[i], s[j]))) for i, j in pairs)


def _stretched(atoms, bond, length):
    """Positions with the part on ``bond[1]``'s side moved along the bond to make it ``length`` Å."""
    a, b = bond
    pairs = [tuple(p) for p in covalent_bonds(atoms.numbers, atoms.positions) if set(p) != {a, b}]
    n = len(atoms)
    g = coo_matrix((np.ones(len(pairs)), tuple(np.array(pairs).T.reshape(2, -1))), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    pos = atoms.positions.copy()
    v = pos[b] - pos[a]
    d = np.linalg.norm(v)
    pos[lab == lab[b]] += v / d * (length - d)
    return pos


@pytest.mark.parametrize("name", sorted(BONDS))
def test_covalent_bonds_of_every_element_pair(name):
    a = molecule(name)
    assert _kinds(a, covalent_bonds(a.numbers, a.positions)) == Counter(BONDS[name])


@pytest.mark.parametrize("name, bond, label", [
    ("H3CNH2", (0, 1), "C-N"), ("H3CNH2", (1, 3), "N-H"), ("CH3OH", (0, 1), "C-O"), ("CH3OH", (1, 3), "O-H"),
    ("N2H4", (0, 1), "N-N"), ("H2O2", (0, 1), "O-O"), ("CH3NO2", (1, 5), "N-O"), ("CH3CH2OH", (0, 1), "C-C"),
    ("H2", (0, 1), "H-H"),
])
def test_a_bond_breaks_past_twice_its_covalent_radii(name, bond, label):
    a = molecule(name)
    assert tuple(sorted(bond)) in {tuple(p) for p in covalent_bonds(a.numbers, a.positions).tolist()}
    limit = BREAK_SCALE * (covalent_radii[a.numbers[bond[0]]] + covalent_radii[a.numbers[bond[1]]])
    traj = np.stack([a.positions, _stretched(a, bond, 0.99 * limit), _stretched(a, bond, 1.01 * limit)])
    brk = find_break(a.numbers, traj)
    assert brk.index == 2 and brk.bond == tuple(sorted(bond)) and brk.break_length == pytest.approx(limit)
    assert brk.elements == label and brk.label == f"{label} {min(bond)}-{max(bond)}"


def test_bond_report_follows_the_skeleton_of_any_elements():
    """Dimethyl ether pulled by its carbons breaks a C–O bond: the report follows both C–O
    bonds (the C–C report sees none); ethanol's skeleton is C–C and C–O."""
    ether = molecule("CH3OCH3")  # C0 O1 C2
    ref = ether.positions
    limit = 1.3 * (covalent_radii[6] + covalent_radii[8])
    broken = _stretched(ether, (1, 2), 3.0)
    traj = np.stack([ref, _stretched(ether, (1, 2), 0.98 * limit), _stretched(ether, (1, 2), 1.02 * limit), broken])
    r = bond_report(ether.numbers, traj, ref, pulled=(0, 2))
    assert r["labels"] == ["C-O 0-1", "O-C 1-2"] and r["on_load_path"].all()
    assert r["break_lengths"] == pytest.approx([limit, limit]) and r["break_length"] == pytest.approx(1.846)
    assert r["stretched_bond"] == (1, 2) and r["first_break"] == 2
    assert r["n_fragments"].tolist() == [1, 1, 2, 2] and r["first_wrong_bond_broken"] is None
    assert r["summary"]["stretched_label"] == "O-C 1-2"
    # both C–O bonds gone: three pieces, and a bond other than the stretched one broken
    both = np.stack([ref, _stretched(ether, (1, 0), 3.0) + (broken - ref)])
    r = bond_report(ether.numbers, both, ref, pulled=(0, 2), expected_bond=(2, 1))
    assert r["n_fragments"].tolist() == [1, 3] and r["first_wrong_bond_broken"] == 1 and r["first_multi_fragment"] == 1
    assert cc_bond_report(ether.numbers, traj, ref, pulled=(0, 2))["stretched_bond"] is None
    with pytest.raises(ValueError, match=r"\(0, 2\) is not a followed \(skeleton\) bond .*followed: C-O 0-1, O-C 1-2"):
        bond_report(ether.numbers, traj, ref, expected_bond=(0, 2))

    ethanol = molecule("CH3CH2OH")  # C0 C1 O2 H3 (on O)
    ref = ethanol.positions
    r = bond_report(ethanol.numbers, np.stack([ref, _stretched(ethanol, (1, 2), 3.0)]), ref, pulled=(0, 2))
    assert r["labels"] == ["C-C 0-1", "C-O 1-2"] and r["stretched_bond"] == (1, 2) and r["first_break"] == 1
    # the C–O bond is not longer than C–C's break length (1.98 Å) at 1.90 Å, but past its own (1.85 Å)
    r = bond_report(ethanol.numbers, _stretched(ethanol, (1, 2), 1.90), ref)
    assert r["broken"].tolist() == [[False, True]]
    water = molecule("H2O")  # no skeleton: its O–H bonds are followed
    assert bond_report(water.numbers, water.positions, water.positions)["labels"] == ["O-H 0-1", "O-H 0-2"]


@pytest.mark.parametrize("name, heavy, h", [("CH3OH", 1, 3), ("H3CNH2", 1, 4), ("CH3CH2OH", 2, 3)])
def test_stray_atom_rule_on_oxygen_and_nitrogen_hydrogens(name, heavy, h):
    """An H of O or N that stays beyond 1.3 × the sum of covalent radii (O–H 1.26 Å, N–H 1.33 Å)
    for the patience is a blow-up; a long vibration within it, or a shorter stray spell, is not."""
    a = molecule(name)
    assert a.numbers[h] == 1 and a.numbers[heavy] in (7, 8)
    cut = 1.3 * (covalent_radii[1] + covalent_radii[a.numbers[heavy]])
    rules = BlowUpRules(fragment_patience_fs=100.0, check_every=10)  # 200 steps of 0.5 fs
    inside, outside = _stretched(a, (heavy, h), 0.97 * cut), _stretched(a, (heavy, h), 1.03 * cut)
    assert check_blowup(a.numbers, outside, 0.0, np.zeros((len(a), 3))) is None  # not instantaneous
    m = _Monitor(a.numbers, rules, anchors=(), timestep_fs=0.5)
    for step in range(0, 400, 10):  # within the bond the whole time
        m.check_fragments(step, inside)
    m = _Monitor(a.numbers, rules, anchors=(), timestep_fs=0.5)
    for step in range(0, 200, 10):  # unbound for 190 steps < patience
        m.check_fragments(step, outside)
    m.check_fragments(200, inside)
    with pytest.raises(BlowUp, match=rf"atom\(s\) {h} \(Z=1\) without a covalent partner since step 210"):
        for step in range(210, 420, 10):
            m.check_fragments(step, outside)
    # a pulled hydrogen is exempt
    m = _Monitor(a.numbers, rules, anchors=(h, 0), timestep_fs=0.5)
    for step in range(0, 400, 10):
        m.check_fragments(step, outside)
