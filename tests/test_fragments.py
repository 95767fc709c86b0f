"""selection.fragment_frames: the fragments of broken pulls moved apart, labelled whatever the UQ."""
import json

import numpy as np
import pytest

from rarelearn.dataset import Frames, read_frames, write_frames
from rarelearn.learning.fragments import fragments_apart


def _pull(n=50, broken=True, seed=0):
    """Ethane whose second carbon, with its hydrogens, moves 2.5 Å off along the C-C bond (or
    0.2 Å: not broken)."""
    from ase.build import molecule
    rng = np.random.default_rng(seed)
    atoms = molecule("C2H6")
    z = atoms.numbers
    pos = atoms.positions
    c0, c1 = 0, 1
    u = (pos[c1] - pos[c0]) / np.linalg.norm(pos[c1] - pos[c0])
    far = np.array([c1] + [h for h in range(2, len(z)) if np.linalg.norm(pos[h] - pos[c1]) < 1.2])
    traj = np.repeat(pos[None], n, axis=0) + rng.normal(0, 0.005, (n, len(z), 3))
    shift = np.linspace(0, 2.5 if broken else 0.2, n)
    traj[:, far] += shift[:, None, None] * u
    return Frames(numbers=z, positions=traj, source="smd", extras={"spring_distance": np.linspace(2, 4, n)}), far


def test_fragments_step_out_to_reach_rigidly():
    pull, far = _pull()
    fr, bonds = fragments_apart([pull], 4, 6.0, iteration=3)
    assert len(fr) == 4 and bonds == [[0, 1]] * 4
    from rarelearn.chem.breaks import find_break
    brk = find_break(pull.numbers, pull.positions)
    last = pull.positions[brk.index]                                          # the break frame
    r0 = np.linalg.norm(last[1] - last[0])
    assert 3.04 < r0 < 3.2 and brk.index < len(pull) - 5
    lengths = np.linalg.norm(fr.positions[:, 1] - fr.positions[:, 0], axis=1)
    np.testing.assert_allclose(lengths, r0 + (6.0 - r0) * np.arange(1, 5) / 4)
    np.testing.assert_allclose(fr.extras["fragment_bond_length"], lengths)
    near = np.setdiff1d(np.arange(len(pull.numbers)), far)
    for p in fr.positions:
        np.testing.assert_allclose(p[near], last[near])                       # one fragment stays
        d_new = np.linalg.norm(p[far][:, None] - p[far][None], axis=-1)
        d_old = np.linalg.norm(last[far][:, None] - last[far][None], axis=-1)
        np.testing.assert_allclose(d_new, d_old, atol=1e-12)                 # the other moves rigidly
    assert (fr.source == "fragments").all() and (fr.status == "unlabelled").all() and (fr.iteration == 3).all()
    assert np.isnan(fr.energy).all()


def test_only_broken_pulls_short_of_reach_give_fragments():
    intact, _ = _pull(broken=False)
    assert fragments_apart([intact], 4, 6.0) == (None, [])
    broken, _ = _pull()
    assert fragments_apart([broken], 4, 2.0) == (None, [])                   # already apart past reach
    assert fragments_apart([broken], 0, 6.0) == (None, [])
    fr, _ = fragments_apart([intact, broken, Frames.empty(broken.numbers)], 3, 6.0)
    assert len(fr) == 3                                                       # all from the broken one
    with pytest.raises(ValueError):
        fragments_apart([broken], -1, 6.0)


def _select_inputs(tmp_path, pulls):
    """Replica files of ``pulls`` and a UQ file that flags every frame, for select_step; and a
    selection section that keeps 6 frames."""
    import h5py
    paths = []
    with h5py.File(tmp_path / "uq.h5", "w") as h5:
        for r, pull in enumerate(pulls):
            p = tmp_path / f"replica_{r:02d}.h5"
            write_frames(p, pull)
            paths.append(p)
            g = h5.create_group(p.stem)
            g.create_dataset("energies", data=np.tile(np.linspace(0, 3, len(pull)), (3, 1)))
            g.create_dataset("sigma", data=np.full(len(pull), 0.2))
            g.attrs["threshold"] = 0.1
    sel = {"uq_first_steps": 10, "n_sigma": 3.0, "max_post_break": 50, "max_frames": 6, "min_distance_gap": 0.01,
           "min_energy_gap_kcal": 1.0, "augment_copies": 2, "augment_amplitude": 0.05, "seed": 11,
           "blowup_lookback": 10}
    return paths, sel


def test_select_step_adds_fragment_frames_on_top(tmp_path):
    from rarelearn.steps.select import select_step
    paths, sel = _select_inputs(tmp_path, [_pull(seed=r)[0] for r in range(2)])
    plain = select_step(tmp_path / "uq.h5", paths, sel, 100, 2, tmp_path / "plain")
    more = select_step(tmp_path / "uq.h5", paths, {**sel, "fragment_frames": 5, "fragment_reach": 6.0}, 100, 2,
                       tmp_path / "more")
    assert plain["selected"] == 6 and more["selected"] == 6 + 5
    assert more["total_new"] == plain["total_new"] + 5                         # no noisy copies
    assert more["sources"]["fragments"] == 5 and more["fragments"]["bond_lengths"][-1] == pytest.approx(6.0)
    new = Frames.concatenate([read_frames(p) for p in sorted((tmp_path / "more").glob("batch_*.h5"))])
    frag = new.subset(new.source == "fragments")
    assert len(frag) == 5 and (frag.iteration == 2).all()
    assert json.loads((tmp_path / "more" / "selection.json").read_text())["fragments"]["frames"] == 5


def _snapping_pull(n=60):
    """Ethane pulled apart: the C-C bond runs from 1.5 Å past 1.98 Å (1.3 x covalent radii) and
    its break length (3.04 Å) to 4 Å."""
    pull, _ = _pull(n=n)
    r = np.linalg.norm(pull.positions[:, 1] - pull.positions[:, 0], axis=1)
    pull.extras = {**pull.extras, "pull_force": -np.interp(np.arange(n), [0, 20, 50, n - 1], [0.0, 4.5, 0.1, 0.0])}
    return pull, r


def test_snap_frames_lie_between_the_snaps_start_and_the_break_spread_in_bond_length():
    from rarelearn.chem.breaks import find_break
    from rarelearn.learning.fragments import snap_frames
    pull, r = _snapping_pull()
    brk = find_break(pull.numbers, pull.positions)
    start = int(np.flatnonzero(r[: brk.index] <= 1.976)[-1])                 # 1.3 x (0.76 + 0.76) Å
    assert brk.broke and 5 < start < brk.index - 5
    fr, bonds = snap_frames([pull], 4, iteration=5)
    assert len(fr) == 4 and bonds == [[0, 1]] * 4
    lengths = np.linalg.norm(fr.positions[:, 1] - fr.positions[:, 0], axis=1)
    np.testing.assert_allclose(fr.extras["snap_bond_length"], lengths)
    assert r[start] <= lengths.min() and lengths.max() <= r[brk.index]     # the window: snap's start to break
    targets = r[start] + (r[brk.index] - r[start]) * (np.arange(4) + 0.5) / 4
    step = np.abs(np.diff(r)).max()
    assert (lengths >= targets).all() and (lengths < targets + step).all()  # the first frame past each target
    frames = [int(np.flatnonzero(np.all(np.isclose(pull.positions, p), axis=(1, 2)))[0]) for p in fr.positions]
    assert frames == sorted(frames) and start <= frames[0] and frames[-1] <= brk.index
    assert (fr.source == "snap").all() and (fr.status == "unlabelled").all() and (fr.iteration == 5).all()
    assert np.isnan(fr.energy).all() and np.isnan(fr.forces).all()


def test_snap_frames_deal_over_broken_pulls_only():
    from rarelearn.learning.fragments import snap_frames
    a, _ = _snapping_pull()
    b, _ = _snapping_pull()
    b.positions = b.positions + 0.001
    intact, _ = _pull(broken=False)
    assert snap_frames([intact], 4) == (None, [])
    assert snap_frames([a], 0) == (None, [])
    fr, _ = snap_frames([a, intact, b, Frames.empty(a.numbers)], 5)
    def count_in(pull):
        return sum(bool(np.any(np.all(np.isclose(pull.positions, p, atol=1e-9), axis=(1, 2)))) for p in fr.positions)
    assert len(fr) == 5 and count_in(a) == 3 and count_in(b) == 2          # dealt 3 + 2, none from the intact one
    with pytest.raises(ValueError):
        snap_frames([a], -1)


def test_select_step_adds_snap_frames_on_top(tmp_path):
    from rarelearn.steps.select import select_step
    paths, sel = _select_inputs(tmp_path, [_snapping_pull()[0] for _ in range(2)])
    plain = select_step(tmp_path / "uq.h5", paths, sel, 100, 2, tmp_path / "plain")
    more = select_step(tmp_path / "uq.h5", paths, {**sel, "snap_frames": 4}, 100, 2, tmp_path / "more")
    assert more["selected"] == plain["selected"] + 4 and more["total_new"] == plain["total_new"] + 4
    assert more["sources"]["snap"] == 4
    new = Frames.concatenate([read_frames(p) for p in sorted((tmp_path / "more").glob("batch_*.h5"))])
    assert (new.source == "snap").sum() == 4
    rec = json.loads((tmp_path / "more" / "selection.json").read_text())["snap"]
    assert rec["frames"] == 4 and len(rec["bond_lengths"]) == 4 and min(rec["bond_lengths"]) > 1.5
