"""UQ (σ, threshold), similarity screening, post-break cap, augmentation: known answers."""
import numpy as np
import pytest

from rarelearn.dataset import Frames
from rarelearn.learning.selection import DEFAULT_ENERGY_GAP, augment, cap_frames, screen, select_frames
from rarelearn.learning.uq import member_energies, sigma, threshold



# ------------------------------------------------------------------ σ and threshold
def test_threshold_known_values():
    s = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 200.0])
    # first 4: mean 2.5, std (ddof 0) sqrt(1.25)
    assert threshold(s, n_first=4, n_sigma=3.0) == pytest.approx(2.5 + 3 * np.sqrt(1.25))
    assert threshold(s, n_first=4, n_sigma=1.0) == pytest.approx(2.5 + np.sqrt(1.25))
    # fewer values than n_first: all are used
    assert threshold(s, n_first=1000) == pytest.approx(s.mean() + 3 * s.std())
    # a constant series gives its value
    assert threshold(np.full(10, 0.2)) == pytest.approx(0.2)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_threshold_rejects_nonpositive_nsigma(bad):
    with pytest.raises(ValueError):
        threshold(np.ones(5), n_sigma=bad)


def test_threshold_rejects_empty_and_nan():
    with pytest.raises(ValueError):
        threshold(np.array([]))
    with pytest.raises(ValueError):
        threshold(np.array([1.0, np.nan]))


def test_sigma_is_numpy_std():
    rng = np.random.default_rng(3)
    e = rng.normal(size=(5, 40))
    np.testing.assert_allclose(sigma(e), np.std(e, axis=0), rtol=0, atol=0)
    assert sigma(np.ones((1, 3))).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        sigma(np.ones(3))


def test_sigma_of_ensemble_predictions():
    from rarelearn.models.ani import EnsembleModel, build_ani, make_spec

    import torch

    torch.manual_seed(0)
    spec = make_spec(["H", "C"], {"H": [8], "C": [8]}, {"H": -10.7, "C": -48.8})
    ens = EnsembleModel(build_ani(spec["elements"], spec["hidden"], spec["self_energies"], n_members=3), spec)
    rng = np.random.default_rng(0)
    base = np.array([[0, 0, 0], [1.53, 0, 0], [-0.4, 1.0, 0], [-0.4, -0.5, 0.9], [-0.4, -0.5, -0.9],
                     [1.93, 1.0, 0], [1.93, -0.5, 0.9], [1.93, -0.5, -0.9]])
    fr = Frames(numbers=[6, 6, 1, 1, 1, 1, 1, 1], positions=base + rng.uniform(-0.1, 0.1, (7, 8, 3)))
    e = member_energies(ens, fr)
    assert e.shape == (3, 7)
    np.testing.assert_array_equal(sigma(e), np.std(e, axis=0))
    # each member alone agrees with the ensemble's member row
    np.testing.assert_allclose(member_energies(ens.member(1), fr)[0], e[1], atol=1e-4)


# ------------------------------------------------------------------ screening
def test_screen_hand_built_series():
    d = np.array([6.50, 6.505, 6.52, 6.54, 6.60, 6.70, 6.80])
    e = np.array([0.00, 0.10, 0.01, 0.20, 0.21, 0.40, 0.05])
    kept = screen(np.arange(7), d, e, min_distance_gap=0.01, min_energy_gap=0.0433641)
    # 0 kept; 1: distance gap 0.005 too small; 2: energy gap 0.01 too small;
    # 3: differs from 0 in both; 4: energy 0.01 from frame 3; 5: differs from 0 and 3;
    # 6: energy 0.05 from frame 0 -> kept (both gaps exceeded for every kept frame)
    assert kept.tolist() == [0, 3, 5, 6]


def test_screen_gap_must_be_exceeded_for_every_kept_frame():
    d = np.array([1.0, 2.0, 3.0])
    e = np.array([0.0, 1.0, 1.02])  # frame 2 close in energy to frame 1 only
    assert screen([0, 1, 2], d, e, 0.01, 0.0433641).tolist() == [0, 1]
    # candidates are global indices; walking order is the given order
    assert screen([2, 0], d, e, 0.01, 0.0433641).tolist() == [2, 0]
    assert screen([], d, e).tolist() == []


def test_default_energy_gap_is_one_kcal_mol():
    assert DEFAULT_ENERGY_GAP == pytest.approx(0.0433641, abs=1e-7)


def test_select_frames_threshold_and_post_break_cap():
    n = 200
    s = np.zeros(n)
    s[10:200:2] = 1.0  # candidates 10, 12, ..., 198
    d = np.linspace(6.5, 9.5, n)
    e = np.arange(n) * 0.1  # every candidate differs enough
    idx = select_frames(s, 0.5, d, e, break_index=100, max_post_break=5)
    pre = [i for i in range(10, 100, 2)]
    assert idx.tolist() == pre + [100, 102, 104, 106, 108]
    even = select_frames(s, 0.5, d, e, break_index=100, max_post_break=5, post_break="even")
    assert even[:len(pre)].tolist() == pre and len(even) == len(pre) + 5
    assert even[len(pre)] == 100 and even[-1] == 198
    # no break: no cap
    assert len(select_frames(s, 0.5, d, e, break_index=None)) == 95
    # overall cap spreads evenly over the kept frames, time order
    capped = select_frames(s, 0.5, d, e, break_index=None, max_frames=10)
    assert len(capped) == 10 and capped[0] == 10 and capped[-1] == 198
    assert np.all(np.diff(capped) > 0)
    # nothing above threshold: empty, valid
    assert select_frames(s, 2.0, d, e, break_index=100).size == 0


def test_post_break_frames_are_screened_among_themselves():
    """A pull whose fragments lie lower than its barrier (GFN2-xTB): every post-break energy
    is within 1 kcal/mol of some kept frame of the intact chain. Read literally, the paper's
    screening keeps none of them, however uncertain; screened among themselves, they are kept,
    and the pre-break selection is the same either way."""
    n_pre, n_post = 400, 200
    s = np.ones(n_pre + n_post)                              # all above the threshold
    d = np.linspace(6.5, 9.5, n_pre + n_post)                # spring distance grows throughout
    e = np.concatenate([np.linspace(0.0, 6.5, n_pre),        # up the barrier, 6.5 eV
                        np.linspace(5.5, 5.0, n_post)])      # fragments: 5.5 -> 5.0 eV, below it
    joint = select_frames(s, 0.5, d, e, break_index=n_pre, post_break_screening="joint")
    separate = select_frames(s, 0.5, d, e, break_index=n_pre)   # the default
    assert (joint >= n_pre).sum() == 0
    post = separate[separate >= n_pre]
    assert len(post) >= 10                                   # 0.5 eV at 1 kcal/mol steps: 11
    assert np.all(np.abs(np.diff(e[post])) > DEFAULT_ENERGY_GAP)
    assert np.array_equal(separate[separate < n_pre], joint)
    # the post-break cap still holds, and without a break both read the same
    assert (select_frames(s, 0.5, d, e, break_index=n_pre, max_post_break=3) >= n_pre).sum() == 3
    assert np.array_equal(select_frames(s, 0.5, d, e, None),
                          select_frames(s, 0.5, d, e, None, post_break_screening="joint"))
    with pytest.raises(ValueError, match="post_break_screening"):
        select_frames(s, 0.5, d, e, n_pre, post_break_screening="both")


def test_select_frames_deterministic():
    rng = np.random.default_rng(1)
    s, d, e = rng.random(500), np.linspace(6.5, 9.5, 500), rng.random(500)
    a = select_frames(s, 0.7, d, e, 300, max_post_break=10)
    b = select_frames(s, 0.7, d, e, 300, max_post_break=10)
    assert np.array_equal(a, b)
    assert (a >= 300).sum() <= 10


# ------------------------------------------------------------------ augmentation
def _frames(f=4, n=5):
    rng = np.random.default_rng(0)
    return Frames(numbers=[6] + [1] * (n - 1), positions=rng.normal(size=(f, n, 3)),
                  energy=rng.normal(size=f), forces=rng.normal(size=(f, n, 3)),
                  extras={"spring_distance": np.arange(f, dtype=float)}, iteration=3)


def test_cap_gives_the_post_break_frames_their_share():
    """selection.post_break_share: of the cap, at most round(s * cap) post-break frames, each side
    spread evenly over its own kept frames; a side short of frames leaves its room to the other;
    without a share one even spread over all (the post-break frames' own proportion)."""
    fr = _frames(f=100)
    fr.extras["post_break"] = (np.arange(100) % 10 == 9).astype(float)       # 10 of 100, interleaved
    post = lambda sub: int((sub.extras["post_break"] > 0.5).sum())
    plain = cap_frames(fr, 20)
    assert len(plain) == 20 and post(plain) <= 3
    shared = cap_frames(fr, 20, post_break_share=0.3)
    assert len(shared) == 20 and post(shared) == 6
    assert np.all(np.diff(shared.extras["spring_distance"]) > 0)               # still in order
    assert post(cap_frames(fr, 20, post_break_share=0.8)) == 10                # only 10 exist: the rest pre
    assert len(cap_frames(fr, 20, post_break_share=0.8)) == 20
    assert post(cap_frames(fr, 20, post_break_share=0.0)) == 0
    assert len(cap_frames(fr, 200, post_break_share=0.3)) == 100               # under the cap: all
    few_pre = fr.subset(np.flatnonzero(fr.extras["post_break"] > 0.5)[:8].tolist() + [0, 1])
    assert len(cap_frames(few_pre, 6, post_break_share=0.3)) == 6              # 2 pre, then post fills


def test_augment_count_bounds_and_labels():
    fr = _frames()
    aug = augment(fr, n_copies=2, amplitude=0.05, seed=7)
    assert len(aug) == 8
    parent = np.repeat(np.arange(4), 2)
    delta = aug.positions - fr.positions[parent]
    assert np.abs(delta).max() <= 0.05
    assert np.abs(delta).max() > 0.04  # uses the range
    assert np.all(delta != 0)
    assert np.isnan(aug.energy).all() and np.isnan(aug.forces).all()
    assert set(aug.status) == {"unlabelled"} and set(aug.source) == {"augment"}
    assert not aug.ok.any()
    assert aug.iteration.tolist() == [3] * 8
    assert aug.extras["augment_parent"].tolist() == parent.tolist()
    assert aug.extras["spring_distance"].tolist() == parent.astype(float).tolist()
    # originals not included, input untouched
    assert np.isfinite(fr.energy).all()
    # same seed -> same copies; another seed -> other copies
    np.testing.assert_array_equal(augment(fr, 2, 0.05, seed=7).positions, aug.positions)
    assert not np.allclose(augment(fr, 2, 0.05, seed=8).positions, aug.positions)
    assert len(augment(fr, n_copies=0)) == 0
    assert len(augment(fr, n_copies=3, amplitude=0.1, seed=1)) == 12


def _broken_pulls(tmp_path, n_replicas=2, n=300):
    """Butane-like 4-carbon chains whose last carbon is pulled off (the 3-4 bond breaks at
    frame ~n/2); the predicted energy climbs 6.5 eV to the break, then the fragments sit at
    5.0-5.5 eV, inside the range the intact chain covered; σ above the threshold everywhere."""
    import h5py
    from rarelearn.dataset import write_frames
    rng = np.random.default_rng(3)
    paths = []
    with h5py.File(tmp_path / "uq.h5", "w") as h5:
        for r in range(n_replicas):
            pos = np.array([[0, 0, 0], [1.5, 0, 0], [3.0, 0, 0], [4.5, 0, 0]])[None] + rng.normal(0, 0.01, (n, 4, 3))
            pos[:, 3, 0] += np.linspace(0, 3.0, n)
            fr = Frames(numbers=np.full(4, 6), positions=pos, source="smd",
                        extras={"spring_distance": np.linspace(4.5, 7.5, n)})
            write_frames(tmp_path / f"replica_{r:02d}.h5", fr)
            paths.append(tmp_path / f"replica_{r:02d}.h5")
            half = n // 2
            e = np.concatenate([np.linspace(0, 6.5, half), np.linspace(5.5, 5.0, n - half)])
            g = h5.create_group(f"replica_{r:02d}")
            g.create_dataset("energies", data=np.tile(e, (3, 1)))
            g.create_dataset("sigma", data=np.full(n, 0.2))
            g.attrs["threshold"] = 0.1
    return tmp_path / "uq.h5", paths


def test_select_step_labels_the_fragments(tmp_path):
    """Through the select step: the default screening keeps post-break frames where the
    paper's literal one walk keeps none, and post_break_share sets their part of the cap."""
    from rarelearn.chem.breaks import find_break
    from rarelearn.dataset import read_frames
    from rarelearn.steps.select import select_step
    uq, reps = _broken_pulls(tmp_path)
    bi = find_break(read_frames(reps[0]).numbers, read_frames(reps[0]).positions).index
    assert 100 < bi < 200
    sel = {"uq_first_steps": 50, "n_sigma": 3.0, "max_post_break": 50, "max_frames": 40, "min_distance_gap": 0.01,
           "min_energy_gap_kcal": 1.0, "augment_copies": 0, "augment_amplitude": 0.05, "seed": 11,
           "blowup_lookback": 10}

    def post_break(summary):
        return sum(sum(i >= r["break_index"] for i in r["indices"]) for r in summary["replicas"])

    def labelled_past_break(out):
        fr = Frames.concatenate([read_frames(p) for p in sorted(out.glob("batch_*.h5"))])
        return int((np.linalg.norm(fr.positions[:, 3] - fr.positions[:, 2], axis=1) > 3.04).sum())

    joint = select_step(uq, reps, {**sel, "post_break_screening": "joint"}, 100, 1, tmp_path / "joint")
    separate = select_step(uq, reps, sel, 100, 1, tmp_path / "separate")
    shared = select_step(uq, reps, {**sel, "post_break_share": 0.5}, 100, 1, tmp_path / "shared")
    assert post_break(joint) == 0 and labelled_past_break(tmp_path / "joint") == 0
    assert post_break(separate) >= 2 * 10
    assert separate["selected"] == shared["selected"] == 40
    assert 0 < labelled_past_break(tmp_path / "separate") < 20
    assert labelled_past_break(tmp_path / "shared") == 20
