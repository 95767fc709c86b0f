"""Model building, model files, EnsembleModel, ASE calculator, TorchScript (GFN2-xTB ethane data)."""
import copy

import numpy as np
import pytest
import torch

from conftest import fd_forces, gfn2_atom_energies  # noqa: E402
from rarelearn.dataset import Frames
from rarelearn.models.ani import DEFAULT_HIDDEN, EnsembleModel, NNPCalculator, build_ani, make_spec
from rarelearn.models.committee import ModelError
from rarelearn.models.export import export_potential
from rarelearn.models.files import load_ensemble, save_ensemble
from rarelearn.learning.fit import TrainConfig, train_member
from rarelearn.learning.splits import random_split



@pytest.fixture(scope="session")
def labelled():
    """300 GFN2-xTB frames of ethane (random perturbations of MD snapshots) + atom energies."""
    from ase import units
    from ase.build import molecule
    from ase.md.langevin import Langevin
    from tblite.ase import TBLite

    atoms = molecule("C2H6")
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=800, friction=0.1, fixcm=False,
                   rng=np.random.default_rng(2))
    rng = np.random.default_rng(3)
    pos, e, f = [], [], []
    for i in range(100):
        dyn.run(2)
        snap = atoms.positions.copy()
        for _ in range(3):
            p = snap + rng.uniform(-0.06, 0.06, snap.shape)
            probe = atoms.copy()
            probe.calc = atoms.calc
            probe.positions = p
            pos.append(p)
            e.append(probe.get_potential_energy())
            f.append(probe.get_forces())
    return (Frames(numbers=atoms.numbers, positions=np.array(pos), energy=np.array(e), forces=np.array(f)),
            gfn2_atom_energies())


@pytest.fixture(scope="session")
def trained(labelled, tmp_path_factory):
    """Two members with the paper's architecture trained on the 300 frames, saved to a file."""
    fr, self_e = labelled
    spec = make_spec(["H", "C"], None, self_e)
    states, hists = [], []
    for k in range(2):
        tr, va = random_split(len(fr), seed=k)
        cfg = TrainConfig(epochs=12, batch_size=32, lr=1e-3, log_every=0, threads=1)
        st, h = train_member(fr, tr, va, spec, cfg, seed=k, log=lambda m: None)
        states.append(st)
        hists.append(h)
    path = tmp_path_factory.mktemp("model") / "ens.pt"
    save_ensemble(path, states, spec, meta={"iteration": 0, "seeds": [0, 1], "mae": np.float64(0.1)})
    return path, spec, hists


# ------------------------------------------------------------------ building
def test_build_ani_dims_and_order():
    se = {"H": -10.0, "C": -48.0, "N": -70.0, "O": -100.0}
    m = build_ani(["H", "C"], None, se)
    assert m.aev_computer.out_dim == 128
    assert m.symbols == ("H", "C")
    h = m.neural_networks.members[0].atomics["H"]
    assert [layer.out_features for layer in h.layers] == [256, 192, 160] and h.layers[0].bias is not None
    assert [layer.out_features for layer in m.neural_networks.members[0].atomics["C"].layers] == [224, 192, 160]
    m4 = build_ani(["H", "C", "N", "O"], None, se, n_members=3)
    assert m4.aev_computer.out_dim == 384 and m4.symbols == ("H", "C", "N", "O")
    assert len(m4.neural_networks.members) == 3
    assert [la.out_features for la in m4.neural_networks.members[0].atomics["O"].layers] == DEFAULT_HIDDEN["O"]
    # self energies are stored in Hartree
    from ase.units import Hartree

    np.testing.assert_allclose(m.energy_shifter.self_energies.numpy(), np.array([-10.0, -48.0]) / Hartree,
                               rtol=1e-6)
    with pytest.raises(ValueError):
        make_spec(["H", "C"], None, {"H": -1.0})
    with pytest.raises(ValueError):
        make_spec(["H", "Xx"], None, {"H": -1.0, "Xx": 0.0})


def test_trained_model_quality(trained, labelled):
    _, _, hists = trained
    fr, _ = labelled
    for h in hists:
        assert h["epoch_train_loss"][-1] < h["epoch_train_loss"][0]
        # much better than predicting the mean
        assert h["val_force_mae"] < 0.6 * np.abs(fr.forces - fr.forces.mean()).mean()


# ------------------------------------------------------------------ forces
def test_forces_are_minus_gradient(trained, labelled):
    path, _, _ = trained
    fr, _ = labelled
    ens = load_ensemble(path)
    e, f = ens.energies_forces(fr.numbers, fr.positions[:5])
    assert e.shape == (2, 5) and f.shape == (2, 5, 8, 3)
    np.testing.assert_allclose(e, ens.energies(fr.numbers, fr.positions[:5]), atol=2e-4)
    # central finite differences in double precision
    ens64 = load_ensemble(path)
    ens64.module.double()
    x0 = fr.positions[0]
    _, f64 = ens64.energies_forces(fr.numbers, x0)
    fd = fd_forces(lambda x: ens64.energies(fr.numbers, x[None])[:, 0], x0, h=1e-4)  # (K, 8, 3)
    np.testing.assert_allclose(f64[:, 0], fd, atol=2e-5 * max(1.0, np.abs(fd).max()))
    np.testing.assert_allclose(f[:, 0], f64[:, 0], atol=5e-3)


# ------------------------------------------------------------------ files
def test_save_load_weights_only(trained, labelled):
    path, spec, _ = trained
    fr, _ = labelled
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == "rarelearn-ani" and blob["version"] == 1
    assert blob["spec"]["elements"] == ["H", "C"] and blob["spec"]["activation"] == "gelu"
    assert blob["meta"]["mae"] == 0.1 and isinstance(blob["meta"]["mae"], float)
    assert len(blob["members"]) == 2
    ens = load_ensemble(path)
    assert ens.n_members == 2 and ens.elements == ["H", "C"] and ens.meta["iteration"] == 0
    again = EnsembleModel.from_states(blob["spec"], blob["members"])
    np.testing.assert_array_equal(again.energies(fr.numbers, fr.positions[:10]),
                                  ens.energies(fr.numbers, fr.positions[:10]))
    one = ens.member(1)
    assert one.n_members == 1
    np.testing.assert_allclose(one.energies(fr.numbers, fr.positions[:10])[0],
                               ens.energies(fr.numbers, fr.positions[:10])[1], atol=1e-4)
    # batching does not change the result
    np.testing.assert_allclose(ens.energies(fr.numbers, fr.positions, batch_size=7),
                               ens.energies(fr.numbers, fr.positions), atol=1e-4)


def test_model_errors_name_file_and_elements(trained, tmp_path):
    path, spec, _ = trained
    ens = load_ensemble(path)
    with pytest.raises(ModelError, match=r"model covers H, C; structure has O"):
        ens.check_elements([6, 1, 8, 1])
    from ase import Atoms

    water_ish = Atoms("COH2", positions=np.eye(4, 3) * 1.2)
    with pytest.raises(ModelError, match="structure has O"):
        NNPCalculator(ens).get_potential_energy(water_ish)
    with pytest.raises(ModelError, match="no such model file"):
        load_ensemble(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else", "weights": torch.zeros(3)}, other)
    with pytest.raises(ModelError, match="other.pt.*not a rarelearn ANI model"):
        load_ensemble(other)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ModelError, match="trunc.pt"):
        load_ensemble(trunc)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(ModelError, match="text.pt"):
        load_ensemble(text)
    # members that do not fit the spec
    blob = torch.load(path, weights_only=True)
    blob["spec"]["hidden"]["H"] = [10, 10]
    bad = tmp_path / "badspec.pt"
    torch.save(blob, bad)
    with pytest.raises(ModelError, match="badspec.pt"):
        load_ensemble(bad)
    # a model for other elements, loaded fine, rejects this molecule
    oh = make_spec(["H", "O"], {"H": [8], "O": [8]}, {"H": -10.0, "O": -100.0})
    oh_path = save_ensemble(tmp_path / "ho.pt", [build_ani(oh["elements"], oh["hidden"], oh["self_energies"])
                                                 .neural_networks.members[0].state_dict()], oh)
    with pytest.raises(ModelError, match=r"ho.pt: model covers H, O; structure has C"):
        load_ensemble(oh_path).check_elements([6, 6, 1, 1, 1, 1, 1, 1])


def test_save_is_atomic_and_validates(trained, tmp_path):
    path, spec, _ = trained
    blob = torch.load(path, weights_only=True)
    target = tmp_path / "m.pt"
    bad_state = copy.deepcopy(blob["members"][0])
    bad_state.pop(next(iter(bad_state)))
    with pytest.raises(ModelError):
        save_ensemble(target, [bad_state], spec)
    assert not target.exists() and not list(tmp_path.iterdir())
    with pytest.raises(TypeError):
        save_ensemble(target, blob["members"], spec, meta={"x": object()})
    assert not list(tmp_path.glob("*"))


# ------------------------------------------------------------------ ASE
def test_ase_calculator(trained, labelled):
    from ase import Atoms

    path, _, _ = trained
    fr, _ = labelled
    ens = load_ensemble(path)
    atoms = Atoms(numbers=fr.numbers, positions=fr.positions[7])
    atoms.calc = NNPCalculator(path)
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    ek, fk = ens.energies_forces(fr.numbers, fr.positions[7])
    assert e == pytest.approx(ek[:, 0].mean(), abs=2e-4)
    np.testing.assert_allclose(f, fk[:, 0].mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(atoms.calc.results["energies"], ek[:, 0], atol=2e-4)
    assert atoms.calc.get_property("energy_std", atoms) == pytest.approx(np.std(ek[:, 0]), abs=2e-4)
    mf = atoms.calc.get_property("member_forces", atoms)
    np.testing.assert_allclose(mf, fk[:, 0], atol=1e-4)
    # single member drives energy and forces; std still over the ensemble
    atoms.calc = NNPCalculator(ens, member=1)
    assert atoms.get_potential_energy() == pytest.approx(ek[1, 0], abs=2e-4)
    np.testing.assert_allclose(atoms.get_forces(), fk[1, 0], atol=1e-4)
    assert atoms.calc.results["energy_std"] == pytest.approx(np.std(ek[:, 0]), abs=2e-4)
    # new positions are picked up
    atoms.positions = fr.positions[8]
    assert atoms.get_potential_energy() == pytest.approx(ens.energies(fr.numbers, fr.positions[8])[1, 0],
                                                         abs=2e-4)
    with pytest.raises(ModelError):
        NNPCalculator(ens, member=5)


def test_calculator_drives_md(trained, labelled):
    from ase import Atoms, units
    from ase.md.verlet import VelocityVerlet

    path, _, _ = trained
    fr, _ = labelled
    atoms = Atoms(numbers=fr.numbers, positions=fr.positions[0])
    atoms.calc = NNPCalculator(path, member=0)
    dyn = VelocityVerlet(atoms, 0.25 * units.fs)
    e0 = atoms.get_total_energy()
    dyn.run(20)
    assert abs(atoms.get_total_energy() - e0) < 0.05


# ------------------------------------------------------------------ TorchScript
def test_torchscript_export(trained, labelled, tmp_path):
    path, _, _ = trained
    fr, _ = labelled
    ens = load_ensemble(path)
    out = export_potential(ens, tmp_path / "ens.ts")          # member -1: the committee mean
    ts = torch.jit.load(str(out))
    z = torch.as_tensor(fr.numbers)
    x = torch.as_tensor(fr.positions[:4], dtype=torch.float64)
    ref = ens.energies(fr.numbers, fr.positions[:4])
    # float64 module against the float32 model (self energies in float64 on both sides)
    np.testing.assert_allclose(ts(z, x).numpy(), ref.mean(axis=0), atol=2e-4)
    np.testing.assert_allclose(ts.member_energies(z, x).numpy(), ref, atol=2e-4)
    one = torch.jit.load(str(export_potential(ens, tmp_path / "m1.ts", member=1)))
    np.testing.assert_allclose(one(z, x).numpy(), ref[1], atol=2e-4)
    # forces: energy_forces, and autograd through the scripted module
    _, fk = ens.energies_forces(fr.numbers, fr.positions[:1])
    _, f = ts.energy_forces(z, x[:1])
    np.testing.assert_allclose(f[0].numpy(), fk[:, 0].mean(axis=0), atol=1e-3)
    xg = x[:1].clone().requires_grad_(True)
    g, = torch.autograd.grad(ts(z, xg).sum(), xg)
    np.testing.assert_allclose(-g[0].numpy(), fk[:, 0].mean(axis=0), atol=1e-3)
