"""Tests of rarelearn.chem.labellers with the real methods (tblite, PySCF); DFTB+ only its error paths."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from ase.build import molecule

from conftest import fd_atoms_forces  # noqa: E402
from rarelearn.dataset import STATUS_FAILED, STATUS_OK, Frames
from rarelearn.chem.labellers import LABELLERS, LabellerError, make_labeller


def _fd_forces(lab, atoms, h=1e-4):
    """Central finite difference of the labeller's energy, eV/Å."""
    return fd_atoms_forces(lambda a: lab.single_point(a)[0], atoms, h)


def _perturbed(atoms, n, scale=0.05, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([atoms.positions + rng.uniform(-scale, scale, atoms.positions.shape) for _ in range(n)])


# ------------------------------------------------------------------ factory
def test_known_names():
    assert LABELLERS == ("gfn2-xtb", "gfn1-xtb", "dftb+", "pyscf")


def test_unknown_name_lists_known():
    with pytest.raises(LabellerError) as err:
        make_labeller("gfn3-xtb")
    msg = str(err.value)
    assert "gfn3-xtb" in msg
    for name in LABELLERS:
        assert name in msg


@pytest.mark.parametrize("name", ["gfn2-xtb", "pyscf"])
def test_unknown_option_named(name):
    with pytest.raises(LabellerError, match=f"'electronic_temp'.*'{name}'"):
        make_labeller(name, {"electronic_temp": 300})


def test_name_case_insensitive():
    assert make_labeller("GFN2-xTB").name == "gfn2-xtb"


def test_threads_option_sets_omp(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    make_labeller("gfn2-xtb", {"threads": 1})
    assert os.environ["OMP_NUM_THREADS"] == "1"


# ------------------------------------------------------------------ xTB
@pytest.mark.parametrize("name", ["gfn2-xtb", "gfn1-xtb"])
def test_xtb_forces_match_finite_difference(name):
    lab = make_labeller(name)
    atoms = molecule("C2H6")
    atoms.positions = _perturbed(atoms, 1, seed=3)[0]
    energy, forces = lab.single_point(atoms)
    assert np.isfinite(energy) and np.abs(forces).max() > 0.1  # off equilibrium
    fd = _fd_forces(lab, atoms)
    np.testing.assert_allclose(forces, fd, atol=1e-3)


def test_xtb_label_three_frames():
    lab = make_labeller("gfn2-xtb")
    atoms = molecule("C2H6")
    frames = Frames(numbers=atoms.numbers, positions=_perturbed(atoms, 3), source="augment",
                    iteration=4, extras={"spring_distance": [1.0, 2.0, 3.0]})
    out = lab.label(frames)
    assert out is not frames and np.isnan(frames.energy).all()  # input untouched
    assert list(out.status) == [STATUS_OK] * 3
    assert list(out.labeller) == ["gfn2-xtb"] * 3
    assert list(out.source) == ["augment"] * 3 and list(out.iteration) == [4] * 3
    np.testing.assert_array_equal(out.extras["spring_distance"], [1.0, 2.0, 3.0])
    assert (out.extras["label_seconds"] > 0).all()
    assert out.ok.all()
    np.testing.assert_array_equal(out.positions, frames.positions)
    # Same as a direct calculator call; ethane GFN2 energy is about -199.6 eV.
    for i in range(3):
        a = out.to_atoms(i)
        a.calc = lab.calculator()
        assert a.get_potential_energy() == pytest.approx(out.energy[i], abs=1e-6)
        np.testing.assert_allclose(a.get_forces(), out.forces[i], atol=1e-6)
    assert -201 < out.energy.mean() < -198


def test_xtb_failures_recorded_and_batch_goes_on():
    """CH4 stretched 3x does not converge in 250 SCF cycles with GFN2 (tblite raises
    CalculationFailed "SCF not converged"); NaN positions and coincident atoms fail too."""
    lab = make_labeller("gfn2-xtb")
    ch4 = molecule("CH4")
    stretched = ch4.positions * 3.0
    nan = ch4.positions.copy()
    nan[1, 0] = np.nan
    coincident = ch4.positions.copy()
    coincident[2] = coincident[1]
    pos = np.stack([ch4.positions, stretched, nan, coincident, ch4.positions + 0.02])
    out = lab.label(Frames(numbers=ch4.numbers, positions=pos))
    assert list(out.status) == [STATUS_OK, STATUS_FAILED, STATUS_FAILED, STATUS_FAILED, STATUS_OK]
    assert list(out.ok) == [True, False, False, False, True]
    assert np.isnan(out.energy[1:4]).all() and np.isnan(out.forces[1:4]).all()
    assert np.isfinite(out.energy[[0, 4]]).all()
    assert list(out.labeller) == ["gfn2-xtb"] * 5
    assert len(out.extras["label_seconds"]) == 5
    errors = dict(lab.last_errors)
    assert sorted(errors) == [1, 2, 3]
    assert "SCF not converged in 250 cycles" in errors[1]
    assert "not finite" in errors[2]
    assert "Too close" in errors[3]


def test_xtb_max_iterations_makes_failed():
    lab = make_labeller("gfn2-xtb", {"max_iterations": 1})
    ethane = molecule("C2H6")
    out = lab.label(Frames(numbers=ethane.numbers, positions=_perturbed(ethane, 2)))
    assert list(out.status) == [STATUS_FAILED] * 2
    assert all("SCF not converged in 1 cycles" in msg for _, msg in lab.last_errors)
    ok = make_labeller("gfn2-xtb", {"max_iterations": 20}).label(
        Frames(numbers=ethane.numbers, positions=_perturbed(ethane, 2)))
    assert list(ok.status) == [STATUS_OK] * 2


def test_xtb_options_reach_calculator():
    lab = make_labeller("gfn1-xtb", {"electronic_temperature": 1000, "spin_polarization": True,
                                     "multiplicity": 3, "max_iterations": 100})
    p = lab.calculator().parameters
    assert p["method"] == "GFN1-xTB" and p["verbosity"] == 0
    assert p["electronic_temperature"] == 1000 and p["spin_polarization"] == 1.0
    assert p["multiplicity"] == 3 and p["max_iterations"] == 100 and p["charge"] == 0
    assert make_labeller("gfn2-xtb").calculator().parameters["spin_polarization"] is None


@pytest.mark.parametrize("name", ["gfn2-xtb", "gfn1-xtb"])
def test_xtb_isolated_atom_energies(name):
    e = make_labeller(name).isolated_atom_energies(["H", "C", "O", "N"])
    assert set(e) == {"H", "C", "O", "N"}
    assert all(np.isfinite(v) for v in e.values())
    assert e["O"] < e["N"] < e["C"] < e["H"] < 0
    if name == "gfn2-xtb":  # spin-polarised ground states
        assert e["H"] == pytest.approx(-11.68, abs=0.01)
        assert e["C"] == pytest.approx(-50.03, abs=0.01)


def test_isolated_atom_unknown_element():
    with pytest.raises(LabellerError, match="'Xx'"):
        make_labeller("gfn2-xtb").isolated_atom_energies(["H", "Xx"])


# ------------------------------------------------------------------ PySCF
PYSCF_TINY = {"functional": "lda,vwn", "basis": "sto-3g"}


def test_pyscf_h2_energy_and_forces():
    lab = make_labeller("pyscf", PYSCF_TINY)
    h2 = molecule("H2")
    h2.positions = [[0.0, 0.0, 0.0], [0.02, -0.01, 0.8]]  # stretched, off-axis: non-zero forces
    energy, forces = lab.single_point(h2)
    assert energy == pytest.approx(-30.43, abs=0.05)  # LDA/STO-3G H2 near 0.8 Å, eV
    assert np.abs(forces).max() > 0.1
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(forces, _fd_forces(lab, h2), atol=1e-3)


def test_pyscf_label_and_failure():
    water = molecule("H2O")
    pos = _perturbed(water, 2, scale=0.03)
    pos[1, 0, 0] = np.nan
    out = make_labeller("pyscf", PYSCF_TINY).label(
        Frames(numbers=water.numbers, positions=pos, source="md"))
    assert list(out.status) == [STATUS_OK, STATUS_FAILED]
    assert list(out.labeller) == ["pyscf"] * 2
    assert np.isfinite(out.energy[0]) and np.isfinite(out.forces[0]).all()
    # Not converged SCF (2 cycles are too few for water) -> failed
    lab = make_labeller("pyscf", {**PYSCF_TINY, "max_cycle": 2})
    bad = lab.label(Frames(numbers=water.numbers, positions=pos[:1]))
    assert list(bad.status) == [STATUS_FAILED]
    assert "not converged" in lab.last_errors[0][1]


def test_pyscf_open_shell_and_atoms():
    lab = make_labeller("pyscf", {**PYSCF_TINY, "charge": 1, "spin": 1})  # H2+ -> UKS
    h2p = molecule("H2")
    e, f = lab.single_point(h2p)
    assert np.isfinite(e) and np.isfinite(f).all()
    atoms = make_labeller("pyscf", PYSCF_TINY).isolated_atom_energies(["H", "C", "N", "O"])
    assert all(np.isfinite(v) for v in atoms.values())
    assert atoms["H"] == pytest.approx(-11.855, abs=0.01)  # UKS LDA/STO-3G H atom


# ------------------------------------------------------------------ DFTB+
def _fake_executable(path):
    path.write_text("#!/bin/sh\nexit 3\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_dftb_missing_binary(monkeypatch, tmp_path):
    monkeypatch.delenv("ASE_DFTB_COMMAND", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no dftb+ here
    with pytest.raises(LabellerError, match=r"dftb\+ binary 'dftb\+' not found on PATH"):
        make_labeller("dftb+", {"skf_dir": str(tmp_path)})
    with pytest.raises(LabellerError, match="binary '/no/such/dftb' not found"):
        make_labeller("dftb+", {"command": "/no/such/dftb"})


def test_dftb_missing_skf(monkeypatch, tmp_path):
    exe = _fake_executable(tmp_path / "dftb+")
    skf = tmp_path / "skf"
    skf.mkdir()
    (skf / "H-H.skf").write_text("")
    monkeypatch.delenv("DFTB_PREFIX", raising=False)
    with pytest.raises(LabellerError, match="skf_dir"):
        make_labeller("dftb+", {"command": str(exe)})
    with pytest.raises(LabellerError, match=f"Slater-Koster file C-C.skf not found in {skf}"):
        make_labeller("dftb+", {"command": str(exe), "skf_dir": str(skf)})
    monkeypatch.setenv("DFTB_PREFIX", str(skf))
    with pytest.raises(LabellerError, match="C-C.skf"):
        make_labeller("dftb+", {"command": str(exe)})


def test_dftb_failing_run_becomes_failed(tmp_path):
    """Wiring only (there is no DFTB+ here): a dftb+ that exits non-zero makes the frame failed,
    and the input asks for DFTB3/3OB."""
    exe = _fake_executable(tmp_path / "dftb+")
    skf = tmp_path / "skf"
    skf.mkdir()
    for a in "CH":
        for b in "CH":
            (skf / f"{a}-{b}.skf").write_text("0.02, 20\n")
    lab = make_labeller("dftb+", {"command": str(exe), "skf_dir": str(skf), "workdir": str(tmp_path)})
    ethane = molecule("C2H6")
    out = lab.label(Frames(numbers=ethane.numbers, positions=ethane.positions))
    assert list(out.status) == [STATUS_FAILED] and list(out.labeller) == ["dftb+"]
    p = lab.calculator().parameters
    assert p["Hamiltonian_ThirdOrderFull"] == "Yes" and p["Hamiltonian_DampXH"] == "Yes"
    assert p["Hamiltonian_HubbardDerivs_C"] == -0.1492 and p["Hamiltonian_HubbardDerivs_H"] == -0.1857
    with pytest.raises(LabellerError, match="H-O.skf"):
        lab.label(Frames.from_atoms([molecule("H2O")]))
