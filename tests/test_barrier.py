import math

import numpy as np
import pytest
from ase.build import molecule

from rarelearn.barrier import ReplicaSummary, activation_energy, break_index, delta, summarize
from rarelearn.dataset import Frames


def test_activation_energy_on_a_hand_made_curve():
    d = np.linspace(6.5, 9.5, 301)
    w = 7.5 * np.exp(-((d - 8.2) ** 2) / 0.5) - 0.3 * (d > 8.2)  # peak at 8.2 Å
    ea, at = activation_energy(w, d)
    assert ea == pytest.approx(w.max())
    assert at == pytest.approx(8.2)
    # non-finite values are ignored, ties go to the first frame
    w2 = np.array([0.0, 1.0, np.nan, 3.0, 3.0, 2.0])
    assert activation_energy(w2, np.arange(6.0)) == (3.0, 3.0)
    with pytest.raises(ValueError):
        activation_energy([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        activation_energy([], [])
    with pytest.raises(ValueError):
        activation_energy([np.nan], [1.0])


def test_summarize_against_numpy():
    v = np.array([7.51, 7.56, 7.68, 7.62])
    s = summarize(v)
    assert isinstance(s, ReplicaSummary)
    assert s.n == 4
    assert s.mean == pytest.approx(v.mean())
    assert s.std == pytest.approx(v.std(ddof=1))
    assert s.stderr == pytest.approx(v.std(ddof=1) / 2.0)
    assert s.values == pytest.approx(v.tolist())
    one = summarize([7.5])
    assert one.mean == 7.5 and one.n == 1
    assert math.isnan(one.stderr) and math.isnan(one.std)
    empty = summarize([])
    assert empty.n == 0 and math.isnan(empty.mean)


def test_delta_combines_standard_errors():
    a, b = summarize([7.0, 7.2, 7.1]), summarize([7.5, 7.56, 7.68, 7.62])
    diff, se = delta(a, b)
    assert diff == pytest.approx(np.mean([7.0, 7.2, 7.1]) - np.mean([7.5, 7.56, 7.68, 7.62]))
    assert se == pytest.approx(math.hypot(a.stderr, b.stderr))
    diff1, se1 = delta(summarize([7.0]), b)
    assert diff1 == pytest.approx(7.0 - b.mean)
    assert math.isnan(se1)


def _stretched_ethane_frames(ccs) -> Frames:
    a = molecule("C2H6")
    axis = a.positions[1] - a.positions[0]
    d0 = np.linalg.norm(axis)
    axis /= d0
    out = []
    for cc in ccs:
        pos = a.positions.copy()
        pos[[0, 2, 3, 4]] -= 0.5 * (cc - d0) * axis
        pos[[1, 5, 6, 7]] += 0.5 * (cc - d0) * axis
        out.append(pos)
    return Frames(numbers=a.numbers, positions=np.stack(out))


def test_break_index():
    ccs = [1.53, 1.7, 1.9, 2.1, 1.9, 2.2, 2.5, 3.0]
    fr = _stretched_ethane_frames(ccs)
    assert break_index(fr) == 3
    assert break_index(fr, min_frames=2) == 5
    assert break_index(fr, scale=1.5) == 6  # 1.5 x 1.52 = 2.28 Å
    assert break_index(_stretched_ethane_frames([1.5, 1.6, 1.7])) is None
    assert break_index(fr.subset(np.zeros(len(fr), dtype=bool))) is None
