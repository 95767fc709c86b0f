"""One committee trained on frames of several molecules (a FrameSet): indexing, the
frame-weighted loss, training, self energies, best member, and the training steps
(GFN2-xTB labels of rattled methane and ethane)."""
import numpy as np
import pytest
import torch

from conftest import gfn2_atom_energies  # noqa: E402
from rarelearn.dataset import Frames, read_frames, write_frames
from rarelearn.frameset import FrameSet, read_training_frames
from rarelearn.jsonio import read_json, write_json
from rarelearn.learning.aev_data import _Data, _MultiData, make_data
from rarelearn.learning.errors import best_member, evaluate_errors
from rarelearn.learning.fit import TrainConfig, train_ensemble_fused, train_member
from rarelearn.learning.members import fitted_self_energies
from rarelearn.learning.splits import random_split
from rarelearn.models.ani import EnsembleModel, build_networks, make_spec

SMALL = {"H": [16, 8], "C": [16, 8]}
CPU = torch.device("cpu")
QUIET = {"log": lambda m: None}
TIMING = ("seconds", "seconds_per_epoch", "precompute_seconds")


def _rattled(name: str, n: int, seed: int) -> Frames:
    """``n`` GFN2-xTB frames of molecule ``name`` rattled by 0.06 Å around ASE's geometry."""
    from ase.build import molecule
    from tblite.ase import TBLite

    atoms = molecule(name)
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    pos = atoms.positions[None] + np.random.default_rng(seed).normal(scale=0.06, size=(n, len(atoms), 3))
    e, f = [], []
    for p in pos:
        atoms.positions = p
        e.append(atoms.get_potential_energy())
        f.append(atoms.get_forces())
    return Frames(numbers=atoms.numbers, positions=pos, energy=e, forces=f, source="md", labeller="gfn2-xtb")


@pytest.fixture(scope="module")
def mols():
    """Methane (5 atoms, 40 frames) and ethane (8 atoms, 48 frames), isolated-atom energies."""
    return _rattled("CH4", 40, 0), _rattled("C2H6", 48, 1), gfn2_atom_energies()


@pytest.fixture(scope="module")
def spec(mols):
    meth, eth, atom_e = mols
    return make_spec(["H", "C"], SMALL, fitted_self_energies(atom_e, FrameSet([meth, eth])))


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _nets(spec, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_networks(spec)


# ------------------------------------------------------------------ (a) the frame set
def test_frameset_indexing_and_read_training_frames(mols, tmp_path):
    meth, eth, _ = mols
    meth = meth.subset(np.arange(10))
    meth.status[4] = "failed"
    fs = FrameSet([meth, Frames.empty_like(eth), eth])  # an empty part is kept, owns no index
    n1, n2 = len(meth), len(eth)
    assert len(fs) == n1 + n2 and list(fs.offsets) == [0, n1, n1, n1 + n2]
    part, local = fs.part_of([0, n1 - 1, n1, n1 + n2 - 1])
    assert list(part) == [0, 0, 2, 2] and list(local) == [0, n1 - 1, 0, n2 - 1]
    assert fs.part_of(n1 + 3) == (2, 3)
    with pytest.raises(IndexError):
        fs.part_of([n1 + n2])
    assert list(fs.hashes) == list(meth.hashes) + list(eth.hashes)
    assert fs.ok.dtype == bool and list(np.flatnonzero(~fs.ok)) == [4]
    np.testing.assert_array_equal(fs.energy, np.concatenate([meth.energy, eth.energy]))
    assert list(fs.atoms_per_frame) == [5] * n1 + [8] * n2
    # files: one path (or a list of one) -> plain Frames as read_frames; several -> FrameSet in order
    p1, p2 = write_frames(tmp_path / "m.h5", meth), write_frames(tmp_path / "e.h5", eth)
    for arg in (p1, str(p1), [p1]):
        one = read_training_frames(arg)
        assert type(one) is Frames and list(one.hashes) == list(read_frames(p1).hashes)
        np.testing.assert_array_equal(one.forces, read_frames(p1).forces)
    both = read_training_frames([p2, p1])
    assert isinstance(both, FrameSet) and [len(p) for p in both.parts] == [n2, n1]
    assert list(both.hashes) == list(eth.hashes) + list(meth.hashes)
    with pytest.raises(ValueError):
        read_training_frames([])


# ------------------------------------------------------------------ (d) the loss
def test_mixed_batch_loss_is_the_frame_weighted_mean(mols, spec):
    meth, eth, _ = mols
    fs = FrameSet([meth, eth])
    n1 = len(meth)
    data = make_data(fs, np.arange(len(fs)), spec, CPU, "jacobian", 1.0, **QUIET)
    assert isinstance(data, _MultiData) and data.mode == "jacobian"
    assert isinstance(make_data(eth, np.arange(5), spec, CPU, "none", 1.0), _Data)
    nets = _nets(data.spec, 0)
    pick = np.array([3, n1 + 5, 1, n1 + 2, n1 + 7, 0])  # mixed, unsorted
    alpha = 0.1
    loss = data.batch_loss(nets, data.local(pick), alpha)
    part, local = fs.part_of(pick)
    weighted, terms = 0.0, []
    for k, fr in enumerate(fs.parts):
        d = _Data(fr, np.arange(len(fr)), spec, CPU, "jacobian", 1.0)
        rows = d.local(local[part == k])
        weighted = weighted + d.batch_loss(nets, rows, alpha) * len(rows)
        e, f = d.predict(nets, rows, create_graph=False)  # per-frame terms with this molecule's N
        de, df = e - d.energy[rows], f - d.forces[rows]
        terms.append(de ** 2 / np.sqrt(fr.n_atoms) + alpha * (df ** 2).sum(dim=(1, 2)) / fr.n_atoms)
    torch.testing.assert_close(loss, weighted / len(pick))
    torch.testing.assert_close(loss, torch.cat(terms).mean())
    ev = data.evaluate(nets, data.local(pick), alpha, chunk=2)
    assert ev["n"] == len(pick) and ev["loss"] == pytest.approx(float(loss.detach()), rel=1e-5)
    loss.backward()  # one graph through both parts
    assert all(p.grad is not None for p in nets.parameters())


# ------------------------------------------------------------------ (b), (c) training
def test_training_on_two_molecules_lowers_both_errors(mols, spec):
    meth, eth, _ = mols
    fs = FrameSet([meth, eth])
    tr, va = random_split(len(fs), seed=0)
    cfg = TrainConfig(epochs=15, batch_size=16, lr=3e-3, log_every=0)
    start, _ = train_member(fs, tr, va, spec, TrainConfig(epochs=0, log_every=0), seed=5, **QUIET)
    state, h = train_member(fs, tr, va, spec, cfg, seed=5, **QUIET)
    assert h["n_train"] == len(tr) and h["n_val"] == len(va) and h["epochs_run"] == 15
    assert h["epoch_train_loss"][-1] < 0.3 * h["epoch_train_loss"][0]
    for fr in (meth, eth):
        before = evaluate_errors(EnsembleModel.from_states(spec, [start]), fr)
        after = evaluate_errors(EnsembleModel.from_states(spec, [state]), fr)
        assert after["force_mae"] < 0.7 * before["force_mae"]
        assert after["energy_mae"] < before["energy_mae"]
    # the recorded validation errors are those of the kept parameters on both molecules' frames
    part, local = fs.part_of(va)
    val = FrameSet([fr.subset(local[part == k]) for k, fr in enumerate(fs.parts)])
    err = evaluate_errors(EnsembleModel.from_states(spec, [state]), val)
    assert err["energy_mae"] == pytest.approx(h["val_energy_mae"], rel=1e-3)


def test_fused_training_on_a_frameset_matches_per_member(mols, spec):
    meth, eth, _ = mols
    fs = FrameSet([meth.subset(np.arange(24)), eth.subset(np.arange(24))])
    splits = [random_split(len(fs), seed=s) for s in (1, 2)]
    cfg = TrainConfig(epochs=3, batch_size=16, log_every=0)
    fused = train_ensemble_fused(fs, splits, spec, cfg, seeds=[7, 8], **QUIET)
    for (tr, va), seed, (state, hist) in zip(splits, [7, 8], fused):
        ref_state, ref_hist = train_member(fs, tr, va, spec, cfg, seed=seed, **QUIET)
        assert hist["n_train"] == len(tr) and hist["best_epoch"] == ref_hist["best_epoch"]
        for k in state:
            torch.testing.assert_close(state[k], ref_state[k], rtol=1e-4, atol=1e-5)


def test_one_molecule_frameset_trains_bit_identically_to_frames(mols, spec):
    meth, eth, _ = mols
    eth = eth.subset(np.arange(32))
    tr, va = random_split(len(eth), seed=3)
    cfg = TrainConfig(epochs=3, batch_size=8, precompute="jacobian", log_every=0)
    ref, ref_h = train_member(eth, tr, va, spec, cfg, seed=4, **QUIET)
    for fs in (FrameSet([eth]), FrameSet([Frames.empty_like(meth), eth])):
        state, h = train_member(fs, tr, va, spec, cfg, seed=4, **QUIET)
        assert _states_equal(state, ref)
        assert {k: v for k, v in h.items() if k not in TIMING} == {k: v for k, v in ref_h.items()
                                                                   if k not in TIMING}


# ------------------------------------------------------------------ (e) self energies, best member
def test_self_energies_and_best_member_on_a_frameset(mols, spec):
    meth, eth, atom_e = mols
    meth = meth.subset(np.arange(20))
    meth.status[2] = "failed"
    fs = FrameSet([meth, eth])
    se = fitted_self_energies(atom_e, fs)
    shift = se["H"] - atom_e["H"]
    assert se["C"] - atom_e["C"] == pytest.approx(shift)
    residual = [fr.energy[fr.ok] - sum(se["H" if z == 1 else "C"] for z in fr.numbers) for fr in fs.parts]
    assert np.concatenate(residual).sum() == pytest.approx(0.0, abs=1e-6)  # Σ_f (E_f − Σ e) over ok frames
    assert fitted_self_energies(atom_e, FrameSet([eth]))["H"] == pytest.approx(fitted_self_energies(atom_e, eth)["H"])

    ens = EnsembleModel.from_states(spec, [_nets(spec, s).state_dict() for s in (1, 2, 3)])
    k, maes = best_member(ens, fs)
    diffs = [np.abs(ens.energies_forces(fr.numbers, fr.positions[fr.ok])[1] - fr.forces[fr.ok]).reshape(3, -1)
             for fr in fs.parts]
    expected = np.concatenate(diffs, axis=1).mean(axis=1)  # per force component over both molecules
    np.testing.assert_allclose(maes, expected, rtol=1e-12)
    assert k == int(np.argmin(expected))
    assert best_member(ens, FrameSet([eth])) == best_member(ens, eth)
    err = evaluate_errors(ens, fs)
    assert err["n_frames"] == int(fs.ok.sum())
    e_pred = [ens.energies(fr.numbers, fr.positions[fr.ok]).mean(axis=0) - fr.energy[fr.ok] for fr in fs.parts]
    assert err["energy_mae"] == pytest.approx(np.abs(np.concatenate(e_pred)).mean(), rel=1e-10)
    assert evaluate_errors(ens, FrameSet([eth])) == evaluate_errors(ens, eth)


# ------------------------------------------------------------------ (f) the training steps
TRAINING = {"epochs": 2, "batch_size": 16, "lr": 3e-3, "force_weight": 0.1, "train_fraction": 0.8,
            "split": "random", "early_stopping_patience": None, "lr_patience": None, "warm_start": False,
            "seed": 0}
MODEL = {"family": "ani", "members": 2, "hidden": SMALL}


def test_training_steps_take_lists_of_files(mols, tmp_path):
    from rarelearn.models.files import read_model_blob
    from rarelearn.steps.train import best_model_step, train_ensemble_step, train_member_step

    meth, eth, atom_e = mols
    meth = meth.subset(np.arange(20))
    meth.status[1] = "failed"
    data = [write_frames(tmp_path / "c1.h5", meth), write_frames(tmp_path / "c2.h5", eth.subset(np.arange(20)))]
    atoms = [write_json(tmp_path / "a1.json", {"energies": {"H": atom_e["H"], "C": atom_e["C"]}}),
             write_json(tmp_path / "a2.json", {"energies": {"C": atom_e["C"] + 1e-8}})]
    out = tmp_path / "member_0.pt"
    info = train_member_step(data, atoms, MODEL, TRAINING, ["H", "C"], 0, 0, out, tmp_path / "member_0.json",
                             base_data_path=data)
    both = read_training_frames(data)
    tr_h, va_h = set(info["train_hashes"]), set(info["val_hashes"])
    assert not tr_h & va_h and tr_h | va_h == set(both.hashes) >= set(both.hashes[both.ok])
    assert info["history"]["n_train"] + info["history"]["n_val"] == int(both.ok.sum())
    spec = read_model_blob(out)["spec"]
    assert spec["self_energies"]["H"] == pytest.approx(fitted_self_energies(atom_e, both)["H"])
    rec = best_model_step(data, [out], tmp_path / "ens.pt", tmp_path / "best.json")
    assert rec["best_member"] == 0 and read_json(tmp_path / "best.json")["force_mae"] == rec["force_mae"]
    # the fused step trains the same member 0 from the same lists
    infos = train_ensemble_step(data, atoms, MODEL, TRAINING, ["H", "C"], 0,
                                [tmp_path / "f0.pt", tmp_path / "f1.pt"], [tmp_path / "f0.json", tmp_path / "f1.json"],
                                base_data_path=data)
    assert infos[0]["train_hashes"] == info["train_hashes"] and len(infos) == 2
    # atom energies that disagree, and SchNet with several molecules, are refused
    write_json(tmp_path / "a3.json", {"energies": {"C": atom_e["C"] + 1e-3}})
    with pytest.raises(ValueError, match=r"atom energy of C differs between .*a1\.json.* and .*a3\.json"):
        train_member_step(data, [atoms[0], tmp_path / "a3.json"], MODEL, TRAINING, ["H", "C"], 0, 0, out,
                          tmp_path / "x.json")
    with pytest.raises(ValueError, match="SchNet training takes one molecule"):
        train_member_step(data, atoms, {"family": "schnet"}, TRAINING, ["H", "C"], 0, 0, out, tmp_path / "x.json")
