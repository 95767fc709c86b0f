import time

import numpy as np
import pytest
from ase.build import molecule

from rarelearn.chem.geometry import (bond_lengths, bonds_of_elements, covalent_bonds, fragment_counts,
                                     fragment_labels, min_pair_distance, n_fragments)


def ethane_stretched(cc: float) -> np.ndarray:
    """Ethane with the C–C bond set to ``cc`` Å (each CH3 moved rigidly along the axis)."""
    a = molecule("C2H6")
    pos = a.positions.copy()
    axis = pos[1] - pos[0]
    d0 = np.linalg.norm(axis)
    axis /= d0
    shift = 0.5 * (cc - d0) * axis
    side1 = [0, 2, 3, 4]  # C0 and its hydrogens
    side2 = [1, 5, 6, 7]
    pos[side1] -= shift
    pos[side2] += shift
    return pos


def test_ethane_intact_and_broken():
    a = molecule("C2H6")
    bonds = covalent_bonds(a.numbers, a.positions)
    assert bonds.shape == (7, 2)
    assert (bonds[:, 0] < bonds[:, 1]).all()
    assert n_fragments(a.numbers, a.positions) == 1
    broken = ethane_stretched(4.0)
    assert n_fragments(a.numbers, broken) == 2
    n, labels = fragment_labels(a.numbers, broken)
    assert n == 2
    assert len(set(labels[[0, 2, 3, 4]])) == 1 and len(set(labels[[1, 5, 6, 7]])) == 1
    assert labels[0] != labels[1]
    # 1.3 x (0.76 + 0.76) = 1.976 Å is the C–C criterion
    assert n_fragments(a.numbers, ethane_stretched(1.95)) == 1
    assert n_fragments(a.numbers, ethane_stretched(2.0)) == 2
    assert n_fragments(a.numbers, ethane_stretched(2.0), scale=1.5) == 1


def test_lone_atom_is_its_own_fragment():
    a = molecule("CH4")
    pos = a.positions.copy()
    pos[1] += 5.0 * pos[1] / np.linalg.norm(pos[1])
    assert n_fragments(a.numbers, pos) == 2
    n, labels = fragment_labels(a.numbers, pos)
    assert (labels == labels[1]).sum() == 1


def test_fragment_counts_matches_single_frames_and_is_fast():
    a = molecule("C2H6")
    rng = np.random.default_rng(0)
    frames = np.stack([ethane_stretched(cc) for cc in rng.uniform(1.4, 3.0, 50)])
    frames[::7, 2] += 6.0  # some frames with a lone hydrogen too
    counts = fragment_counts(a.numbers, frames)
    assert counts.tolist() == [n_fragments(a.numbers, p) for p in frames]
    assert fragment_counts(a.numbers, frames[:0]).shape == (0,)
    # 6500 frames of a 20-atom molecule
    big = rng.uniform(0.0, 6.0, (6500, 20, 3))
    z = np.array([6] * 6 + [1] * 14)
    t0 = time.perf_counter()
    out = fragment_counts(z, big)
    assert out.shape == (6500,)
    assert time.perf_counter() - t0 < 2.0


def test_min_pair_distance():
    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 5, (12, 3))
    brute = min(np.linalg.norm(pos[i] - pos[j]) for i in range(12) for j in range(i + 1, 12))
    assert min_pair_distance(pos) == pytest.approx(brute)
    many = rng.uniform(0, 5, (4, 12, 3))
    assert np.allclose(min_pair_distance(many), [min_pair_distance(p) for p in many])
    assert min_pair_distance(pos[:1]) == np.inf


def test_bond_lengths_follow_reference_bonds():
    a = molecule("trans-butane")
    cc = bonds_of_elements(a.numbers, a.positions, ("C", "C"))
    assert len(cc) == 3
    assert len(bonds_of_elements(a.numbers, a.positions, ("H", "C"))) == 10
    traj = np.stack([a.positions, a.positions, a.positions])
    traj[2, 0] -= 3.0 * (a.positions[1] - a.positions[0]) / np.linalg.norm(a.positions[1] - a.positions[0])
    lengths = bond_lengths(a.numbers, traj)
    assert lengths.shape == (3, 3)
    assert np.allclose(lengths[0], [np.linalg.norm(a.positions[i] - a.positions[j]) for i, j in cc])
    k = [tuple(p) for p in cc.tolist()].index((0, 1))
    assert lengths[2, k] == pytest.approx(lengths[0, k] + 3.0)
    assert bond_lengths(a.numbers, traj, reference_bonds=[[0, 3]]).shape == (3, 1)
    assert bond_lengths(a.numbers, a.positions).shape == (3,)
