"""SchNet ensembles (forces, files, paper's training recipe, calculator) and the C–C bond report."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric", reason="SchNet needs torch-geometric (pip install torch-geometric==2.8.1)")

from conftest import fd_forces  # noqa: E402
from rarelearn.dataset import Frames  # noqa: E402
from rarelearn.chem.geometry import covalent_bonds, fragment_counts  # noqa: E402
from rarelearn.models.committee import ModelError  # noqa: E402
from rarelearn.chem.molecules import build_alkane  # noqa: E402
from rarelearn.models.schnet import (TABLE2, CdistInteractionGraph, SchNetCalculator, SchNetEnsemble,
                                     build_schnet, make_schnet_spec)
from rarelearn.learning.schnet_fit import SchNetTrainConfig, train_schnet_member
from rarelearn.chem.breaks import cc_bond_report
from rarelearn.models.files import load_model, load_schnet, make_calculator, save_schnet
from rarelearn.learning.schnet_fit import _SchNetData  # noqa: E402
from rarelearn.learning.fit import TrainConfig  # noqa: E402
from rarelearn.learning.errors import best_member, evaluate_errors
from rarelearn.learning.splits import random_split
from rarelearn.learning.uq import sigma, threshold  # noqa: E402

QUIET = dict(log=lambda m: None)


def _ensemble(k=2, seed=0, self_e=None):
    spec = make_schnet_spec(["H", "C"], self_e or {"H": -10.0, "C": -40.0})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        nets = [build_schnet(spec) for _ in range(k)]
    return SchNetEnsemble(nets, spec)


@pytest.fixture(scope="module")
def ethane():
    from ase.build import molecule

    return molecule("C2H6")


@pytest.fixture(scope="module")
def butane_frames():
    """60 GFN2-xTB frames of butane (uniform ±0.1 Å noise around the relaxed structure),
    with self energies shifted so the mean residual energy is zero (as the workflow does)."""
    from ase import Atoms
    from tblite.ase import TBLite

    atoms = build_alkane(4, relax=True)
    calc = TBLite(method="GFN2-xTB", verbosity=0)
    rng = np.random.default_rng(7)
    pos, e, f = [], [], []
    for _ in range(60):
        probe = atoms.copy()
        probe.positions += rng.uniform(-0.1, 0.1, probe.positions.shape)
        probe.calc = calc
        pos.append(probe.positions.copy())
        e.append(probe.get_potential_energy())
        f.append(probe.get_forces())
    fr = Frames(numbers=atoms.numbers, positions=np.array(pos), energy=np.array(e), forces=np.array(f))
    atom_e = {}
    for s in ("H", "C"):
        a = Atoms(s)
        a.calc = TBLite(method="GFN2-xTB", verbosity=0)
        atom_e[s] = float(a.get_potential_energy())
    base = sum(atom_e["H" if z == 1 else "C"] for z in fr.numbers)
    shift = (fr.energy.mean() - base) / fr.n_atoms
    return fr, {s: v + shift for s, v in atom_e.items()}


@pytest.fixture(scope="module")
def trained(butane_frames):
    fr, self_e = butane_frames
    spec = make_schnet_spec(["H", "C"], self_e)
    cfg = SchNetTrainConfig(epochs=6, batch_size=16, log_every=0)
    out = []
    for k in range(2):
        tr, va = random_split(len(fr), seed=k)
        state, hist = train_schnet_member(fr, tr, va, spec, cfg, seed=k, **QUIET)
        out.append((state, hist, tr, va))
    return spec, out


# ---------------------------------------------------------------------- network
def test_spec_has_table2_sizes_and_family():
    spec = make_schnet_spec(["H", "C"], {"H": -1.0, "C": -2.0})
    assert spec["family"] == "schnet"
    assert {k: spec[k] for k in TABLE2} == {"hidden_channels": 128, "num_filters": 128, "num_interactions": 3,
                                             "num_gaussians": 25, "cutoff": 5.0}
    net = build_schnet(spec)
    assert len(net.interactions) == 3 and net.distance_expansion.offset.numel() == 25
    with pytest.raises(ValueError, match="self energies missing"):
        make_schnet_spec(["H", "C"], {"H": -1.0})
    with pytest.raises(ValueError, match="family"):
        save_schnet("unused.pt", [net.state_dict()], {**spec, "family": "ani"})


def test_fast_energy_equals_pyg_schnet_forward(ethane):
    """The shared-graph, half-pair evaluation is PyG's SchNet.forward, for ethane and a
    mixed batch (ethane + butane) through the cdist graph's per-molecule path."""
    ens = _ensemble(k=2)
    rng = np.random.default_rng(0)
    pos = ethane.positions[None] + rng.normal(0, 0.05, (4, 8, 3))
    e = ens.energies(ethane.numbers, pos)
    x = torch.tensor(pos, dtype=torch.float32)
    z = torch.tensor(ethane.numbers).repeat(4)
    batch = torch.arange(4).repeat_interleave(8)
    for k, net in enumerate(ens.nets):
        ref = net(z, x.view(-1, 3), batch).view(-1).double().numpy() + ens.self_energy(ethane.numbers)
        np.testing.assert_allclose(e[k], ref, rtol=0, atol=2e-5)
    butane = build_alkane(4, relax=False)
    zz = torch.tensor(np.concatenate([ethane.numbers, butane.numbers]))
    pp = torch.tensor(np.concatenate([ethane.positions, butane.positions]), dtype=torch.float32)
    bb = torch.tensor([0] * 8 + [1] * 14)
    both = ens.nets[0](zz, pp, bb).view(-1).double().numpy()
    alone = [ens.energies(m.numbers, m.positions)[0, 0] - ens.self_energy(m.numbers) for m in (ethane, butane)]
    np.testing.assert_allclose(both, alone, atol=2e-5)
    idx, w = CdistInteractionGraph(5.0)(pp, bb)
    expected = sum(int((np.linalg.norm(m.positions[:, None] - m.positions[None], axis=-1) < 5.0).sum()) - len(m)
                   for m in (ethane, butane))
    assert idx.shape[1] == expected and bool((w < 5.0).all())
    assert bool((bb[idx[0]] == bb[idx[1]]).all())  # no pair across molecules


def test_forces_are_minus_gradient_of_energy_float64(ethane):
    ens = _ensemble(k=2).to(dtype=torch.float64)
    pos = ethane.positions + np.random.default_rng(1).normal(0, 0.05, ethane.positions.shape)
    e, f = ens.energies_forces(ethane.numbers, pos)
    assert e.shape == (2, 1) and f.shape == (2, 1, 8, 3)
    np.testing.assert_allclose(e, ens.energies(ethane.numbers, pos), atol=1e-10)
    fd = fd_forces(lambda x: ens.energies(ethane.numbers, x)[:, 0], pos, h=1e-5)  # (K, 8, 3)
    np.testing.assert_allclose(f[:, 0], fd, atol=1e-6)
    assert np.abs(f).max() > 0.05  # not trivially zero


def test_calculator_contract_and_member(ethane):
    ens = _ensemble(k=3)
    atoms = ethane.copy()
    atoms.positions += np.random.default_rng(2).normal(0, 0.05, atoms.positions.shape)
    e, f = ens.energies_forces(atoms.numbers, atoms.positions)
    atoms.calc = SchNetCalculator(ens)
    assert atoms.get_potential_energy() == pytest.approx(e[:, 0].mean(), abs=1e-5)
    np.testing.assert_allclose(atoms.get_forces(), f[:, 0].mean(axis=0), atol=1e-5)
    calc = atoms.calc
    np.testing.assert_allclose(calc.results["energies"], e[:, 0], atol=1e-5)
    assert calc.results["energy_std"] == pytest.approx(e[:, 0].std(), abs=1e-5)
    np.testing.assert_allclose(calc.get_property("member_forces", atoms), f[:, 0], atol=1e-5)
    one = make_calculator(ens, member=1)
    assert isinstance(one, SchNetCalculator)
    atoms.calc = one
    assert atoms.get_potential_energy() == pytest.approx(e[1, 0], abs=1e-5)
    np.testing.assert_allclose(atoms.get_forces(), f[1, 0], atol=1e-5)
    sub = ens.member(2)
    assert sub.n_members == 1
    np.testing.assert_allclose(sub.energies(atoms.numbers, atoms.positions)[0], e[2], atol=1e-6)
    with pytest.raises(ModelError, match="N"):
        ens.check_elements([7, 1])


# ---------------------------------------------------------------------- files
def test_save_load_round_trip_and_wrong_files(tmp_path, ethane):
    ens = _ensemble(k=2)
    path = save_schnet(tmp_path / "m" / "schnet.pt", ens.member_states(), ens.spec,
                       meta={"iteration": 3, "mae": np.float64(0.5)})
    assert not list(path.parent.glob(".*.tmp"))  # atomic: no temporary file left
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == "rarelearn-schnet" and blob["spec"]["family"] == "schnet"
    back = load_schnet(path)
    assert back.n_members == 2 and back.elements == ["H", "C"] and back.meta["iteration"] == 3
    pos = ethane.positions[None] + np.random.default_rng(3).normal(0, 0.05, (3, 8, 3))
    np.testing.assert_array_equal(back.energies(ethane.numbers, pos), ens.energies(ethane.numbers, pos))
    assert isinstance(load_model(path), SchNetEnsemble)
    assert isinstance(make_calculator(path), SchNetCalculator)

    other = tmp_path / "other.pt"
    torch.save({"format": "rarelearn-ani", "version": 1}, other)
    with pytest.raises(ModelError, match=r"other\.pt.*not a rarelearn SchNet model.*rarelearn-ani"):
        load_schnet(other)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match=r"junk\.pt"):
        load_schnet(junk)
    with pytest.raises(ModelError, match=r"missing\.pt: no such model file"):
        load_schnet(tmp_path / "missing.pt")
    bad_state = dict(ens.member_states()[0])
    bad_state.pop("lin2.bias")
    with pytest.raises(ModelError, match=r"bad\.pt.*member 0"):
        save_schnet(tmp_path / "bad.pt", [bad_state], ens.spec)
    assert not (tmp_path / "bad.pt").exists()


# ---------------------------------------------------------------------- training
def test_training_lowers_val_loss_and_keeps_best(trained, butane_frames):
    fr, _ = butane_frames
    spec, members = trained
    for state, h, tr, va in members:
        for key in ("train_energy_mae", "val_energy_mae", "train_force_mae", "val_force_mae", "best_epoch",
                    "seconds", "epoch_val_loss", "epoch_lr"):
            assert key in h
        json.dumps(h)
        assert h["family"] == "schnet" and h["config"]["lr"] == 5e-4 and h["config"]["rho"] == 0.1
        assert h["best_val_loss"] < 0.5 * h["initial_val_loss"]
        assert h["best_val_loss"] == min(h["epoch_val_loss"])
        assert h["epoch_val_loss"][h["best_epoch"] - 1] == h["best_val_loss"]
        # the returned parameters are the best epoch's: recompute eq. 4 on the validation frames
        ens = SchNetEnsemble.from_states(spec, [state])
        e, f = ens.energies_forces(fr.numbers, fr.positions[va])
        loss = 0.1 * np.mean((e[0] - fr.energy[va]) ** 2) + 0.9 * np.mean((f[0] - fr.forces[va]) ** 2)
        assert loss == pytest.approx(h["best_val_loss"], rel=1e-3)
        assert np.mean(np.abs(e[0] - fr.energy[va])) == pytest.approx(h["val_energy_mae"], rel=1e-3)


def test_ensemble_feeds_uq_selection_and_errors(trained, butane_frames):
    fr, _ = butane_frames
    spec, members = trained
    ens = SchNetEnsemble.from_states(spec, [m[0] for m in members])
    e = ens.energies(fr.numbers, fr.positions)
    assert e.shape == (2, len(fr)) and np.isfinite(e).all()
    s = sigma(e)
    assert s.shape == (len(fr),) and (s > 0).all()
    assert np.isfinite(threshold(s, n_first=30))
    k, maes = best_member(ens, fr)
    assert k in (0, 1) and len(maes) == 2
    errs = evaluate_errors(ens, fr)
    assert errs["n_frames"] == len(fr) and errs["force_mae"] < 2.0


def test_training_is_deterministic_and_stops_at_min_lr(butane_frames):
    fr, self_e = butane_frames
    spec = make_schnet_spec(["H", "C"], self_e)
    tr, va = np.arange(0, 20), np.arange(20, 26)
    cfg = SchNetTrainConfig(epochs=2, batch_size=8, log_every=0)
    s1, h1 = train_schnet_member(fr, tr, va, spec, cfg, seed=5, **QUIET)
    s2, h2 = train_schnet_member(fr, tr, va, spec, cfg, seed=5, **QUIET)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert h1["epoch_val_loss"] == h2["epoch_val_loss"]
    # warm start from s1 with lr already at its floor: one epoch, then stop (paper: stop at min lr)
    s3, h3 = train_schnet_member(fr, tr, va, spec, SchNetTrainConfig(epochs=50, lr=1e-6, batch_size=8, log_every=0),
                                 seed=5, init_state=s1, **QUIET)
    assert h3["epochs_run"] == 1 and h3["stop_reason"] == "minimum learning rate" and h3["warm_start"]
    # an ANI TrainConfig gives its run settings only; the SchNet recipe stays the paper's
    c = SchNetTrainConfig.from_train_config(TrainConfig(epochs=7, batch_size=32, lr=1e-3, force_weight=0.3))
    assert (c.epochs, c.batch_size, c.lr, c.rho, c.lr_factor, c.lr_patience, c.min_lr) == (7, 32, 5e-4, 0.1,
                                                                                            0.8, 5, 1e-6)
    data = _SchNetData(fr, np.arange(len(fr)), spec, torch.device("cpu"), 0.1)
    assert float(data.energy.abs().mean()) < 5.0  # residual energies are small after the self energies


# ---------------------------------------------------------------------- bond report
@pytest.fixture(scope="module")
def butane():
    return build_alkane(4, relax=False)  # carbons 0-3 in chain order, hydrogens after


def _pulled_apart(atoms, bond, length, positions=None):
    """Positions with the part on ``bond[1]``'s side of ``bond`` shifted along the bond so that
    the bond is ``length`` Å (connectivity from the intact reference structure)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pos = (atoms.positions if positions is None else positions).copy()
    a, b = bond
    pairs = [tuple(p) for p in covalent_bonds(atoms.numbers, atoms.positions) if set(p) != {a, b}]
    n = len(atoms)
    g = coo_matrix((np.ones(len(pairs)), tuple(np.array(pairs).T)), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    side = lab == lab[b]
    v = pos[b] - pos[a]
    d = np.linalg.norm(v)
    pos[side] += v / d * (length - d)
    return pos


def test_report_central_break_is_clean(butane):
    ref = butane.positions
    traj = np.stack([ref, _pulled_apart(butane, (1, 2), 1.8), _pulled_apart(butane, (1, 2), 4.0)])
    r = cc_bond_report(butane.numbers, traj, ref, pulled=(0, 3))
    assert [tuple(p) for p in r["bonds"]] == [(0, 1), (1, 2), (2, 3)]
    assert r["bond_lengths"].shape == (3, 3) and r["bond_lengths"][2, 1] == pytest.approx(4.0)
    assert r["break_length"] == pytest.approx(1.976, abs=1e-3)
    assert r["n_fragments"].tolist() == [1, 1, 2]
    assert r["stretched_bond"] == (1, 2) and r["on_load_path"].all()
    assert r["first_break"] == 2
    assert not r["multi_fragment"].any() and not r["wrong_bond_broken"].any()
    assert r["first_multi_fragment"] is None and r["first_wrong_bond_broken"] is None
    assert r["pulled_distance"][2] > r["pulled_distance"][0] + 1.5
    json.dumps(r["summary"])
    assert r["summary"]["max_fragments"] == 2


def test_report_terminal_bond_while_pulling_ends(butane):
    ref = butane.positions
    terminal = _pulled_apart(butane, (1, 0), 3.0)  # CH3 of C0 torn off, ends pulled
    # decision: one load-path C–C bond breaking is a legitimate dissociation ...
    r = cc_bond_report(butane.numbers, np.stack([ref, terminal]), ref, pulled=(0, 3))
    assert r["stretched_bond"] == (0, 1) and r["n_fragments"].tolist() == [1, 2]
    assert not r["wrong_bond_broken"].any() and not r["multi_fragment"].any()
    # ... unless another bond was expected (e.g. the one the reference SMD broke)
    r = cc_bond_report(butane.numbers, np.stack([ref, terminal]), ref, pulled=(0, 3), expected_bond=(2, 1))
    assert r["stretched_bond"] == (1, 2)
    assert r["wrong_bond_broken"].tolist() == [False, True] and r["first_wrong_bond_broken"] == 1
    assert not r["multi_fragment"].any()
    # a terminal C–C bond beyond the break length on the way, the central one broken at the end: wrong
    transient = _pulled_apart(butane, (1, 0), 2.2)
    traj = np.stack([ref, transient, ref, _pulled_apart(butane, (1, 2), 4.0)])
    r = cc_bond_report(butane.numbers, traj, ref, pulled=(0, 3))
    assert r["stretched_bond"] == (1, 2) and r["first_break"] == 3
    assert r["wrong_bond_broken"].tolist() == [False, True, False, False]
    assert r["first_wrong_bond_broken"] == 1 and r["first_multi_fragment"] is None


def test_report_three_pieces_and_off_path_bond(butane):
    ref = butane.positions
    two = _pulled_apart(butane, (1, 2), 4.0)
    three = _pulled_apart(butane, (2, 3), 4.0, positions=two)
    traj = np.stack([ref, two, three])
    r = cc_bond_report(butane.numbers, traj, ref, pulled=(0, 3))
    assert r["n_fragments"].tolist() == [1, 2, 3]
    assert fragment_counts(butane.numbers, three).tolist() == [3]
    assert r["multi_fragment"].tolist() == [False, False, True] and r["first_multi_fragment"] == 2
    assert r["wrong_bond_broken"].tolist() == [False, False, True]
    # pulling C0 and C2: C2–C3 is off the load path, so breaking it is wrong even alone
    off = _pulled_apart(butane, (2, 3), 3.0)
    r = cc_bond_report(butane.numbers, np.stack([ref, off]), ref, pulled=(0, 2))
    assert r["on_load_path"].tolist() == [True, True, False]
    assert r["stretched_bond"] == (2, 3) and r["wrong_bond_broken"].tolist() == [False, True]
    # without pulled atoms there is no load path: the single break is fine
    r = cc_bond_report(butane.numbers, off, ref)
    assert r["n_fragments"].tolist() == [2] and not r["wrong_bond_broken"].any()
