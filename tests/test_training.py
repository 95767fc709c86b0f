"""Training: seeds, splits, determinism, best-epoch selection, errors (GFN2-xTB ethane data)."""
import json
import math

import numpy as np
import pytest
import torch

from conftest import gfn2_atom_energies  # noqa: E402
from rarelearn.dataset import Frames
from rarelearn.models.ani import EnsembleModel, make_spec
from rarelearn.learning.fit import TrainConfig, train_ensemble_fused, train_member
from rarelearn.learning.errors import best_member, evaluate_errors
from rarelearn.learning.splits import inherited_split, random_split, seed_for

SMALL = {"H": [24, 16], "C": [24, 16]}



@pytest.fixture(scope="session")
def ethane():
    """~160 GFN2-xTB frames of ethane from a short 600 K Langevin run, and isolated-atom energies."""
    from ase import units
    from ase.build import molecule
    from ase.md.langevin import Langevin
    from tblite.ase import TBLite

    calc = TBLite(method="GFN2-xTB", verbosity=0)
    atoms = molecule("C2H6")
    atoms.calc = calc
    rng = np.random.default_rng(0)
    atoms.set_momenta(rng.normal(scale=0.3, size=(len(atoms), 3)) * np.sqrt(atoms.get_masses())[:, None]
                      * np.sqrt(units.kB * 600 / 0.09))
    dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=600, friction=0.05, fixcm=False,
                   rng=np.random.default_rng(1))
    images = []
    for _ in range(160):
        dyn.run(3)
        images.append(atoms.copy())
        images[-1].calc = None
    pos = np.stack([a.positions for a in images])
    e, f = [], []
    for p in pos:
        atoms.positions = p
        e.append(atoms.get_potential_energy())
        f.append(atoms.get_forces())
    self_e = gfn2_atom_energies()
    fr = Frames(numbers=atoms.numbers, positions=pos, energy=np.array(e), forces=np.array(f), source="md",
                labeller="gfn2-xtb")
    return fr, self_e


@pytest.fixture(scope="session")
def spec(ethane):
    return make_spec(["H", "C"], SMALL, ethane[1])


# ------------------------------------------------------------------ seeds and splits
def test_seed_for_deterministic_and_distinct():
    # stable across runs and machines (numpy SeedSequence): a change would reshuffle every campaign
    assert seed_for(3, 1) == 1215816106
    assert seed_for(0, 0) == 1138952335 and seed_for(0, 0, base_seed=1) == 205700787
    # distinct per member and per iteration, and not symmetric in the two
    assert seed_for(0, 1) != seed_for(0, 0) != seed_for(1, 0) != seed_for(0, 1)
    seeds = {seed_for(i, m) for i in range(20) for m in range(7)}
    assert len(seeds) == 140
    assert all(0 <= s < 2**31 for s in seeds)
    assert seed_for(0, 0, base_seed=1) != seed_for(0, 0)


def test_random_split():
    tr, va = random_split(100, seed=5, train_fraction=0.8)
    assert len(tr) == 80 and len(va) == 20
    assert set(tr) | set(va) == set(range(100)) and not set(tr) & set(va)
    tr2, va2 = random_split(100, seed=5)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    assert not np.array_equal(random_split(100, seed=6)[0], tr)
    assert [len(x) for x in random_split(2, 0, 0.8)] == [1, 1]
    assert [len(x) for x in random_split(10, 0, 1.0)] == [10, 0]


def test_inherited_split_keeps_old_sides_and_splits_new():
    old = [f"h{i}" for i in range(50)]
    prev_tr, prev_va = old[:40], old[40:]
    new = [f"n{i}" for i in range(100)]
    hashes = new[:50] + old[::-1] + new[50:]  # order shuffled on purpose
    tr, va = inherited_split(prev_tr, prev_va, hashes, seed=1, train_fraction=0.8)
    tr_h, va_h = {hashes[i] for i in tr}, {hashes[i] for i in va}
    assert set(prev_tr) <= tr_h and set(prev_va) <= va_h
    assert not tr_h & va_h and len(tr) + len(va) == len(hashes)
    new_tr = [h for h in tr_h if h.startswith("n")]
    assert len(new_tr) == 80  # only the 100 new frames are split, 80/20
    # deterministic
    tr2, va2 = inherited_split(prev_tr, prev_va, hashes, seed=1, train_fraction=0.8)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    # frames dropped since the last iteration are simply absent
    tr3, va3 = inherited_split(prev_tr, prev_va, old[:10], seed=1)
    assert len(tr3) == 10 and len(va3) == 0


# ------------------------------------------------------------------ training
def _flat(state):
    return torch.cat([v.reshape(-1) for _, v in sorted(state.items())])


def test_same_seed_same_member_and_best_epoch(ethane, spec):
    fr, _ = ethane
    tr, va = random_split(len(fr), seed=2)
    cfg = TrainConfig(epochs=6, batch_size=16, lr=2e-3, log_every=0)
    s1, h1 = train_member(fr, tr, va, spec, cfg, seed=11, log=lambda m: None)
    s2, h2 = train_member(fr, tr, va, spec, cfg, seed=11, log=lambda m: None)
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
    assert h1["epoch_train_loss"] == h2["epoch_train_loss"]
    s3, _ = train_member(fr, tr, va, spec, cfg, seed=12, log=lambda m: None)
    assert not torch.equal(_flat(s1), _flat(s3))
    # the global torch RNG is not touched
    torch.manual_seed(0)
    a = torch.rand(1)
    torch.manual_seed(0)
    train_member(fr, tr[:20], va[:5], spec, TrainConfig(epochs=1, log_every=0), seed=3, log=lambda m: None)
    assert torch.equal(torch.rand(1), a)


def test_training_lowers_loss_and_keeps_best_validation_parameters(ethane, spec):
    fr, _ = ethane
    tr, va = random_split(len(fr), seed=4)
    lines = []
    cfg = TrainConfig(epochs=20, batch_size=16, lr=3e-3)
    state, h = train_member(fr, tr, va, spec, cfg, seed=5, log=lines.append)
    assert len(h["epoch_train_loss"]) == 20 == h["epochs_run"]
    assert h["epoch_train_loss"][-1] < 0.2 * h["epoch_train_loss"][0]
    assert min(h["epoch_val_loss"]) < h["epoch_val_loss"][0]
    mse = np.array(h["epoch_val_energy_mse"])
    assert h["best_epoch"] == int(np.argmin(mse)) + 1
    assert h["best_val_energy_mse"] == pytest.approx(mse.min())
    # the returned parameters are those of the best epoch: their validation MSE is the minimum
    ens = EnsembleModel.from_states(spec, [state])
    e = ens.energies(fr.numbers, fr.positions[va])[0]
    assert np.mean((e - fr.energy[va]) ** 2) == pytest.approx(mse.min(), rel=1e-3)
    err = evaluate_errors(ens, fr.subset(va))
    assert err["energy_mae"] == pytest.approx(h["val_energy_mae"], rel=1e-3)
    assert err["force_mae"] == pytest.approx(h["val_force_mae"], rel=1e-3)
    assert h["n_train"] == len(tr) and h["n_val"] == len(va)
    assert 2 <= len(lines) <= 12  # progress about every 10 % of the epochs
    assert h["seconds"] > 0 and h["precompute"] in ("jacobian", "none")
    import json

    json.dumps(h)  # history is JSON-serialisable


def test_jacobian_cache_matches_autograd_through_aev(ethane, spec):
    fr, _ = ethane
    tr, va = random_split(60, seed=0)
    out = {}
    for mode in ("jacobian", "none"):
        cfg = TrainConfig(epochs=2, batch_size=16, precompute=mode, log_every=0)
        state, h = train_member(fr, tr, va, spec, cfg, seed=9, log=lambda m: None)
        assert h["precompute"] == mode
        out[mode] = (state, h)
    np.testing.assert_allclose(out["jacobian"][1]["epoch_train_loss"], out["none"][1]["epoch_train_loss"],
                               rtol=1e-3)
    again, _ = train_member(fr, tr, va, spec, TrainConfig(epochs=2, batch_size=16, precompute="jacobian",
                                                          log_every=0), seed=9, log=lambda m: None)
    for k in again:  # bit-identical with the cache too
        assert torch.equal(again[k], out["jacobian"][0][k])
    for k in out["none"][0]:
        torch.testing.assert_close(out["jacobian"][0][k], out["none"][0][k], rtol=1e-3, atol=1e-4)


def test_non_ok_frames_are_skipped(ethane, spec):
    fr, _ = ethane
    bad = fr.subset(np.arange(40))
    bad.status[3] = "failed"
    bad.energy[5] = np.nan
    msgs = []
    _, h = train_member(bad, np.arange(30), np.arange(30, 40), spec, TrainConfig(epochs=1, log_every=0),
                        seed=0, log=msgs.append)
    assert h["n_train"] == 28 and h["n_val"] == 10
    assert any("skipping 2" in m for m in msgs)


def test_early_stopping_fires_after_patience_epochs_without_improvement(ethane, spec):
    fr, _ = ethane
    tr, va = random_split(80, seed=0)
    # lr 0: the parameters never change, so no epoch after the first improves on it
    cfg = TrainConfig(epochs=40, batch_size=16, lr=0.0, early_stopping_patience=3, log_every=0)
    _, h = train_member(fr, tr, va, spec, cfg, seed=1, log=lambda m: None)
    assert h["stop_reason"] == "early stopping"
    assert h["best_epoch"] == 1 and h["epochs_run"] == 4 and len(h["epoch_lr"]) == 4


def test_early_stopping_does_not_fire_within_patience(ethane, spec):
    fr, _ = ethane
    tr, va = random_split(80, seed=0)
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.0, early_stopping_patience=3, log_every=0)
    _, h = train_member(fr, tr, va, spec, cfg, seed=1, log=lambda m: None)
    assert h["stop_reason"] == "epochs" and h["epochs_run"] == 3


def test_lr_schedule_reduces_the_rate_on_a_plateau(ethane, spec):
    fr, _ = ethane
    tr, va = random_split(80, seed=0)
    cfg = TrainConfig(epochs=40, batch_size=16, lr=0.05, early_stopping_patience=3, lr_patience=1,
                      lr_factor=0.5, log_every=0)
    _, h = train_member(fr, tr, va, spec, cfg, seed=1, log=lambda m: None)
    assert min(h["epoch_lr"]) < 0.05  # plateau schedule reduced the rate at some point


def test_lr_schedule_follows_the_figure_that_keeps_the_parameters():
    """The plateau schedule steps on what early stopping and the kept parameters follow
    (the validation energy MSE for ANI), not on the whole loss: forces that improve while
    the energy stalls must not hold the rate up until early stopping puts back an early
    epoch."""
    from rarelearn.learning.epochs import _EpochRecorder

    net = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    cfg = TrainConfig(epochs=10, lr_patience=1, lr_factor=0.5, early_stopping_patience=5, log_every=0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=1)
    rec = _EpochRecorder(net, cfg, 0, "val", "energy_mse", lambda m: None)
    # the energy stalls from epoch 1 on while the whole loss keeps falling
    for epoch in range(1, 5):
        ev = {"loss": 1.0 / epoch, "energy_mse": 0.5, "energy_mae": 0.1, "force_mae": 0.1}
        assert not rec.end_epoch(epoch, net, 1.0, ev, opt, sched)
    assert rec.best_epoch == 1
    assert opt.param_groups[0]["lr"] < 1e-3


def test_lr_warmup_climbs_linearly_then_holds():
    """training.lr_warmup_epochs: the rate climbs linearly over the optimiser steps of the
    first epochs, then stays at lr (a fresh Adam's first full-size steps throw a warm-started
    member far off)."""
    from rarelearn.learning.epochs import _EpochRecorder, run_epochs

    net = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    cfg = TrainConfig(epochs=3, batch_size=4, lr_warmup_epochs=2, log_every=0)
    rec = _EpochRecorder(net, cfg, 0, "val", "energy_mse", lambda m: None)
    seen = []

    def batch_loss(rows):
        seen.append(opt.param_groups[0]["lr"])
        return (net(rows.float().reshape(-1, 1)) ** 2).mean()

    ev = {"loss": 1.0, "energy_mse": 1.0, "energy_mae": 1.0, "force_mae": 1.0}
    run_epochs(net, rec, cfg, opt, None, torch.Generator().manual_seed(0), torch.arange(10), torch.device("cpu"),
               batch_loss, lambda: ev)
    # 3 steps per epoch, 6 warm-up steps: the rate in force at each step (seen before the
    # step's own rate is set) is the previous step's
    applied = seen[1:] + [opt.param_groups[0]["lr"]]
    assert applied[:6] == pytest.approx([1e-2 * k / 6 for k in range(1, 7)])
    assert applied[6:] == pytest.approx([1e-2] * 3)
    with pytest.raises(ValueError, match="lr_warmup_epochs"):
        TrainConfig(lr_warmup_epochs=-1)


def test_warm_start_is_logged_as_epoch_0_but_never_kept(ethane, spec):
    """A warm start's validation figure is logged as epoch 0 and kept in the history, but the
    parameters given back are a trained epoch's: even when training only makes the figure
    worse (here a rate far too high), the member is not handed back unchanged, which in a
    campaign would leave the iteration's new labels unlearned."""
    fr, _ = ethane
    tr, va = random_split(len(fr), seed=0)
    init, _ = train_member(fr, tr, va, spec, TrainConfig(epochs=4, batch_size=16, lr=3e-3, log_every=0),
                           seed=1, log=lambda m: None)
    lines = []
    state, hist = train_member(fr, tr, va, spec, TrainConfig(epochs=2, batch_size=16, lr=5.0, log_every=0),
                               seed=1, init_state=init, log=lines.append)
    assert hist["best_epoch"] in (1, 2)
    assert hist["best_beats_start"] is False
    assert hist["start_energy_mse"] < min(hist["epoch_val_energy_mse"])
    assert any(not torch.equal(state[k], init[k]) for k in init)
    assert any("epoch 0 (warm start)" in line for line in lines)
    _, cold = train_member(fr, tr, va, spec, TrainConfig(epochs=1, batch_size=16, log_every=0), seed=1,
                           log=lambda m: None)
    assert cold["best_beats_start"] is None and "start_energy_mse" not in cold


def test_fused_training_matches_per_member(ethane, spec):
    fr, _ = ethane
    splits = [random_split(60, seed=s) for s in (1, 2)]
    cfg = TrainConfig(epochs=3, batch_size=16, log_every=0)
    fused = train_ensemble_fused(fr.subset(np.arange(60)), splits, spec, cfg, seeds=[7, 8],
                                 log=lambda m: None)
    assert len(fused) == 2
    for (tr, va), seed, (state, hist) in zip(splits, [7, 8], fused):
        ref_state, ref_hist = train_member(fr.subset(np.arange(60)), tr, va, spec, cfg, seed=seed,
                                           log=lambda m: None)
        assert hist["n_train"] == len(tr) and hist["best_epoch"] == ref_hist["best_epoch"]
        for k in state:
            torch.testing.assert_close(state[k], ref_state[k], rtol=1e-4, atol=1e-5)


def test_best_member_and_evaluate_errors(ethane, spec):
    fr, _ = ethane
    tr, va = random_split(len(fr), seed=0)
    good, _ = train_member(fr, tr, va, spec, TrainConfig(epochs=8, batch_size=16, lr=3e-3, log_every=0),
                           seed=1, log=lambda m: None)
    poor, _ = train_member(fr, tr, va, spec, TrainConfig(epochs=1, batch_size=16, log_every=0),
                           seed=2, log=lambda m: None)
    ens = EnsembleModel.from_states(spec, [poor, good])
    k, maes = best_member(ens, fr)
    assert k == 1 and len(maes) == 2 and maes[1] < maes[0]
    _, f = ens.energies_forces(fr.numbers, fr.positions)
    assert maes[0] == pytest.approx(np.abs(f[0] - fr.forces).mean())
    err = evaluate_errors(ens.member(1), fr)
    e1 = ens.energies(fr.numbers, fr.positions)[1]
    assert err["energy_mae"] == pytest.approx(np.abs(e1 - fr.energy).mean(), rel=1e-6)
    assert err["energy_rmse"] == pytest.approx(math.sqrt(np.mean((e1 - fr.energy) ** 2)), rel=1e-6)
    assert err["force_mae"] == pytest.approx(maes[1], rel=1e-6)
    assert err["n_frames"] == len(fr)


def test_warm_start_and_precompute_choice(ethane, spec):
    from rarelearn.learning.aev_data import AUTO_MIN_EPOCHS, _Data

    fr, _ = ethane
    tr, va = random_split(40, seed=0)
    init, _ = train_member(fr, tr, va, spec, TrainConfig(epochs=1, log_every=0), seed=1, log=lambda m: None)
    same, h = train_member(fr, tr, va, spec, TrainConfig(epochs=0, log_every=0), seed=2, init_state=init,
                           log=lambda m: None)
    assert h["best_epoch"] == 0 and h["warm_start"]
    for k in init:
        assert torch.equal(same[k], init[k])
    sub = fr.subset(np.arange(10))
    cpu = torch.device("cpu")
    assert _Data(sub, np.arange(10), spec, cpu, "auto", 4.0, epochs=AUTO_MIN_EPOCHS).mode == "jacobian"
    assert _Data(sub, np.arange(10), spec, cpu, "auto", 4.0, epochs=AUTO_MIN_EPOCHS - 1).mode == "none"
    assert _Data(sub, np.arange(10), spec, cpu, "auto", 0.0, epochs=300).mode == "none"
    with pytest.raises(ValueError, match="model covers H, O; structure has C"):
        _Data(sub, np.arange(10), make_spec(["H", "O"], SMALL | {"O": [8]}, {"H": -1.0, "O": -2.0}), cpu,
              "none", 1.0)


def test_start_from_another_campaigns_committee(ethane, spec, tmp_path):
    """training.start_from: iteration 0's members start from another campaign's iteration
    folder as a warm start would from the iteration before, with its best member's split kept
    for the frames it had (new frames split anew); parameters that do not fit the model fail
    with one line naming the key."""
    from rarelearn.learning.members import member_setup
    from rarelearn.models.committee import ModelError
    from rarelearn.models.files import read_model_blob, save_ensemble

    fr, _ = ethane
    old = fr.subset(np.arange(100))
    tr, va = random_split(len(old), seed=0)
    state, _ = train_member(old, tr, va, spec, TrainConfig(epochs=1, batch_size=16, log_every=0), seed=1,
                            log=lambda m: None)
    start = tmp_path / "other" / "results" / "iter_002"
    (start / "models").mkdir(parents=True)
    save_ensemble(start / "models" / "member_0.pt", [state], spec)
    hashes = old.hashes
    (start / "models" / "member_0.json").write_text(json.dumps(
        {"train_hashes": list(hashes[tr]), "val_hashes": list(hashes[va])}))
    (start / "best.json").write_text(json.dumps({"best_member": 0}))
    training = {"epochs": 1, "batch_size": 16, "lr": 1e-3, "force_weight": 0.1, "train_fraction": 0.8,
                "early_stopping_patience": None, "lr_patience": None, "split": "inherited", "warm_start": True}
    setup = member_setup(fr, training, iteration=0, member=0, previous_dir=start)
    assert setup["split"] == f"inherited from {start} member 0"
    saved = read_model_blob(start / "models" / "member_0.pt")["members"][0]
    assert all(torch.equal(setup["init_state"][k], saved[k]) for k in saved)
    val = set(fr.hashes[setup["val_idx"]])
    assert set(hashes[va]) <= val and not set(hashes[tr]) & val     # the start's split, kept
    assert len(setup["train_idx"]) + len(setup["val_idx"]) == len(fr)
    cold = member_setup(fr, training, iteration=0, member=0, previous_dir=None)
    assert cold["init_state"] is None and cold["split"] == "random"
    wider = make_spec(["H", "C"], {"H": [32, 16], "C": [24, 16]}, ethane[1])
    with pytest.raises(ModelError, match=r"training\.start_from") as exc:
        train_member(fr, setup["train_idx"], setup["val_idx"], wider, TrainConfig(epochs=1, log_every=0), seed=1,
                     init_state=setup["init_state"], log=lambda m: None)
    assert "\n" not in str(exc.value)
    # the members' spec takes the start's self energies, not a fit on this campaign's data
    from rarelearn.steps.train import _training_spec

    atoms = tmp_path / "atom_energies.json"
    atoms.write_text(json.dumps({"energies": {"H": -11.0, "C": -50.0}}))
    own = _training_spec(fr, atoms, {"hidden": SMALL}, ["H", "C"], start_self_energies=setup["init_self_energies"])
    assert own["self_energies"] == pytest.approx(spec["self_energies"])
    assert cold["init_self_energies"] is None
    fitted = _training_spec(fr, atoms, {"hidden": SMALL}, ["H", "C"], start_self_energies=cold["init_self_energies"])
    shift = (fr.energy.mean() - 2 * -50.0 - 6 * -11.0) / 8
    assert fitted["self_energies"] == pytest.approx({"H": -11.0 + shift, "C": -50.0 + shift})
