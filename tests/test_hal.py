"""Tests of rarelearn.learning.hal on an analytic committee (K Morse pair potentials, exact forces)."""
from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.mixing import SumCalculator
from ase.md.verlet import VelocityVerlet

from conftest import fd_atoms_forces  # noqa: E402
from rarelearn.learning.hal import HALCalculator
from rarelearn.learning.hal_stats import (HALError, StopCriterion, committee_stats, max_softmax, max_stop,
                                          relative_force_uncertainty, softmax_stop)


# ---------------------------------------------------------------------- analytic committee
class MorseCommittee(Calculator):
    """K Morse pair potentials E_k = Σ_{i<j} D_k[(1 − exp(−a_k(r − r0_k)))² − 1].

    Fills the committee contract: results["energies"] (K,), results["member_forces"] (K, N, 3),
    plus energy / forces (the mean). Counts its calls.
    """

    implemented_properties = ["energy", "forces", "energies", "member_forces"]

    def __init__(self, D, a, r0, **kwargs):
        super().__init__(**kwargs)
        self.D = np.asarray(D, float)
        self.a = np.asarray(a, float)
        self.r0 = np.asarray(r0, float)
        self.ncalls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.ncalls += 1
        x = self.atoms.positions
        n = len(x)
        i, j = np.triu_indices(n, 1)
        rij = x[i] - x[j]  # (P, 3)
        r = np.linalg.norm(rij, axis=1)  # (P,)
        D, a, r0 = self.D[:, None], self.a[:, None], self.r0[:, None]
        ex = np.exp(-a * (r[None] - r0))  # (K, P)
        e = (D * ((1 - ex) ** 2 - 1)).sum(axis=1)
        dedr = 2 * D * a * (1 - ex) * ex  # (K, P)
        fp = -dedr[:, :, None] * (rij / r[:, None])[None]  # force on i from pair (i, j)
        f = np.zeros((len(self.D), n, 3))
        for k in range(len(self.D)):
            np.add.at(f[k], i, fp[k])
            np.add.at(f[k], j, -fp[k])
        self.results = {"energies": e, "member_forces": f, "energy": float(e.mean()), "forces": f.mean(0)}


class Spring(Calculator):
    """Harmonic spring between atoms 0 and n−1 (a stand-in for the SMD spring)."""

    implemented_properties = ["energy", "forces", "free_energy"]

    def __init__(self, k=2.0, r0=3.0, **kwargs):
        super().__init__(**kwargs)
        self.k, self.r0 = k, r0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        x = self.atoms.positions
        d = x[0] - x[-1]
        r = np.linalg.norm(d)
        f = np.zeros_like(x)
        f[0] = -self.k * (r - self.r0) * d / r
        f[-1] = -f[0]
        e = 0.5 * self.k * (r - self.r0) ** 2
        self.results = {"energy": e, "free_energy": e, "forces": f}


def make_committee(k=4, seed=0):
    rng = np.random.default_rng(seed)
    return MorseCommittee(D=1.0 + 0.1 * rng.standard_normal(k),
                          a=1.5 + 0.1 * rng.standard_normal(k),
                          r0=1.5 + 0.05 * rng.standard_normal(k))


def make_atoms(n=5, seed=1):
    rng = np.random.default_rng(seed)
    # a bent chain with ~1.5 Å neighbours, off the minimum so forces are not small
    x = np.zeros((n, 3))
    for m in range(1, n):
        step = rng.normal(size=3)
        x[m] = x[m - 1] + 1.55 * step / np.linalg.norm(step)
    return Atoms("C" * n, positions=x)


def config_sequence(atoms, n, scale=0.08, seed=3):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = atoms.copy()
        a.positions += rng.uniform(-scale, scale, a.positions.shape)
        out.append(a)
    return out


def fd_gradient(fun, atoms, h=1e-5):
    """Central finite difference of a scalar function of the positions."""
    return -fd_atoms_forces(fun, atoms, h)


def committee_eval(committee, atoms):
    committee.calculate(atoms, ["energies", "member_forces"], all_changes)
    return committee.results["energies"].copy(), committee.results["member_forces"].copy()


# ---------------------------------------------------------------------- the fixture itself
def test_morse_committee_forces_are_minus_gradient():
    com, atoms = make_committee(), make_atoms()
    _, f = committee_eval(com, atoms)
    for k in range(f.shape[0]):
        g = fd_gradient(lambda a: committee_eval(com, a)[0][k], atoms)
        np.testing.assert_allclose(f[k], -g, atol=1e-8)
    assert np.abs(f).max() > 0.1  # not at a minimum


# ---------------------------------------------------------------------- committee_stats
def test_committee_stats_mean_and_sigma():
    e = np.array([1.0, 2.0, 4.0])
    f = np.arange(3 * 2 * 3, dtype=float).reshape(3, 2, 3)
    st = committee_stats(e, f)
    assert st["mean_energy"] == pytest.approx(7.0 / 3)
    assert st["sigma"] == pytest.approx(np.std(e))  # ddof = 0
    np.testing.assert_allclose(st["mean_forces"], f.mean(0))
    # ∇σ² = (2/K) Σ (E_k − Ē)(F̄ − F_k), ∇σ = ∇σ²/(2σ)
    d = e - e.mean()
    g2 = 2 / 3 * sum(d[k] * (f.mean(0) - f[k]) for k in range(3))
    np.testing.assert_allclose(st["grad_sigma"], g2 / (2 * np.std(e)))


def test_grad_sigma_matches_finite_difference():
    com, atoms = make_committee(k=5), make_atoms(n=6)
    st = committee_stats(*committee_eval(com, atoms))
    assert st["sigma"] > 1e-3
    g = fd_gradient(lambda a: np.std(committee_eval(com, a)[0]), atoms)
    np.testing.assert_allclose(st["grad_sigma"], g, atol=1e-8)
    assert np.abs(st["grad_sigma"]).max() > 1e-2


def test_grad_sigma_zero_spread_is_zero():
    f = np.random.default_rng(0).normal(size=(3, 4, 3))
    st = committee_stats(np.full(3, -5.0), f)
    assert st["sigma"] == 0.0
    assert np.all(st["grad_sigma"] == 0.0)
    st1 = committee_stats(np.array([-5.0]), f[:1])  # K = 1
    assert st1["sigma"] == 0.0 and np.all(st1["grad_sigma"] == 0.0)


def test_committee_stats_rejects_bad_shapes():
    with pytest.raises(HALError):
        committee_stats(np.zeros(3), np.zeros((2, 4, 3)))
    with pytest.raises(HALError):
        committee_stats(np.zeros(3), np.zeros((3, 4)))


# ---------------------------------------------------------------------- HAL calculator
def test_hal_forces_are_minus_gradient_of_hal_energy():
    com, atoms = make_committee(k=4), make_atoms(n=5)
    tau = 5.0
    hal = HALCalculator(com, tau=tau)
    atoms.calc = hal
    f = atoms.get_forces()
    assert hal.results["tau"] == tau
    bias = tau * hal.results["grad_sigma"]
    assert np.abs(bias).max() > 0.05  # the bias matters in this test

    def e_hal(a):
        a.calc = hal
        return a.get_potential_energy()

    g = fd_gradient(e_hal, atoms)
    np.testing.assert_allclose(f, -g, atol=1e-8)
    # and E_HAL = Ē − τσ, F_HAL = F̄ + τ∇σ
    e, fm = committee_eval(com, atoms)
    atoms.calc = hal
    assert atoms.get_potential_energy() == pytest.approx(e.mean() - tau * e.std(), abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), fm.mean(0) + bias, atol=1e-12)


def test_tau_zero_reproduces_committee_mean_exactly():
    com, atoms = make_committee(), make_atoms()
    e, f = committee_eval(com, atoms)
    atoms.calc = HALCalculator(com, tau=0.0)
    assert atoms.get_potential_energy() == e.mean()
    assert np.array_equal(atoms.get_forces(), f.mean(0))
    assert atoms.calc.results["sigma"] == pytest.approx(e.std())
    np.testing.assert_array_equal(atoms.calc.get_property("energies", atoms), e)


def test_required_properties_and_results():
    hal = HALCalculator(make_committee(), tau=0.3)
    assert {"energy", "forces", "energies", "sigma", "tau"} <= set(hal.implemented_properties)
    atoms = make_atoms()
    atoms.calc = hal
    assert hal.get_property("sigma", atoms) > 0
    assert hal.get_property("tau", atoms) == 0.3
    assert hal.get_property("member_forces", atoms).shape == (4, len(atoms), 3)
    assert hal.get_property("rel_force_uncertainty", atoms).shape == (len(atoms),)


def test_one_step_per_configuration():
    com, atoms = make_committee(), make_atoms()
    hal = HALCalculator(com, tau_rel=0.1, window=3)
    atoms.calc = hal
    atoms.get_potential_energy()
    atoms.get_forces()
    hal.get_property("sigma", atoms)
    assert len(hal.history) == 1 and com.ncalls == 1
    atoms.positions[0, 0] += 0.01
    atoms.get_forces()
    assert len(hal.history) == 2 and com.ncalls == 2
    hal.reset()  # ASE's reset (new configuration) keeps the history
    assert len(hal.history) == 2
    hal.clear_history()
    assert hal.history == []


def _hand_tau(stats, n, window, tau_rel):
    """τ at step n from the committee statistics of steps n−window … n−1, Frobenius norms."""
    prev = stats[max(0, n - window):n]
    fs = sum(np.linalg.norm(s["mean_forces"]) for s in prev)  # Frobenius norm of (N, 3)
    gs = sum(np.linalg.norm(s["grad_sigma"]) for s in prev)
    return tau_rel * fs / gs


def test_adaptive_tau_over_window():
    com, atoms = make_committee(k=5), make_atoms(n=6)
    window = 100
    configs = config_sequence(atoms, 2 * window + 17)
    # hand computation, independent of the calculator's bookkeeping
    stats = [committee_stats(*committee_eval(make_committee(k=5), a)) for a in configs]
    hal = HALCalculator(make_committee(k=5), tau_rel=0.1)  # window = 100 by default
    assert hal.window == window
    taus = []
    for a in configs:
        a.calc = hal
        a.get_forces()
        taus.append(hal.results["tau"])
    h = hal.history_arrays()
    np.testing.assert_array_equal(h["tau"], taus)
    assert len(taus) == len(configs)
    # burn-in: plain MD while the first `window` steps are recorded
    assert all(t == 0.0 for t in taus[:window])
    for n in range(window, len(configs)):
        assert taus[n] == pytest.approx(_hand_tau(stats, n, window, 0.1), rel=1e-12)
        # and the same from the recorded history
        sl = slice(n - window, n)
        assert taus[n] == pytest.approx(0.1 * h["mean_force_norm"][sl].sum() / h["grad_sigma_norm"][sl].sum(),
                                        rel=1e-12)
    assert taus[-1] > 0
    # energy and forces of one step use that step's τ
    e, f = committee_eval(com, configs[-1])
    st = committee_stats(e, f)
    assert hal.results["energy"] == pytest.approx(st["mean_energy"] - taus[-1] * st["sigma"], abs=1e-12)
    np.testing.assert_allclose(hal.results["forces"], st["mean_forces"] + taus[-1] * st["grad_sigma"], atol=1e-12)


def test_adaptive_tau_proportional_to_tau_rel():
    atoms = make_atoms(n=5)
    configs = config_sequence(atoms, 40, seed=7)
    runs = {}
    for tr in (0.05, 0.2):
        hal = HALCalculator(make_committee(), tau_rel=tr, window=10, burn_in=10)
        for a in configs:
            a.calc = hal
            a.get_forces()
        runs[tr] = hal.history_arrays()["tau"]
    assert np.all(runs[0.05][:10] == 0) and np.all(runs[0.05][10:] > 0)
    np.testing.assert_allclose(runs[0.2][10:], 4 * runs[0.05][10:], rtol=1e-12)
    # changing τ_r mid-run scales the next τ by the same factor
    hal = HALCalculator(make_committee(), tau_rel=0.1, window=10)
    for a in configs[:20]:
        a.calc = hal
        a.get_forces()
    t1 = hal.next_tau()
    hal.tau_rel = 0.25
    assert hal.next_tau() == pytest.approx(2.5 * t1, rel=1e-14)
    configs[20].calc = hal
    configs[20].get_forces()
    assert hal.results["tau"] == pytest.approx(2.5 * t1, rel=1e-14)
    # switching to a fixed τ
    hal.tau = 0.7
    assert not hal.adaptive and hal.next_tau() == 0.7 and hal.tau_rel is None


def test_adaptive_tau_short_burn_in_and_cap():
    configs = config_sequence(make_atoms(), 8, seed=11)
    stats = [committee_stats(*committee_eval(make_committee(), a)) for a in configs]
    hal = HALCalculator(make_committee(), tau_rel=0.2, window=5, burn_in=2)
    for a in configs:
        a.calc = hal
        a.get_forces()
    taus = hal.history_arrays()["tau"]
    assert taus[0] == 0 and taus[1] == 0
    for n in range(2, 8):  # fewer than `window` steps: uses what there is
        assert taus[n] == pytest.approx(_hand_tau(stats, n, 5, 0.2), rel=1e-12)
    capped = HALCalculator(make_committee(), tau_rel=0.2, window=5, burn_in=2, tau_max=1e-3)
    for a in configs:
        a.calc = capped
        a.get_forces()
    assert capped.history_arrays()["tau"].max() == pytest.approx(1e-3)


def test_atomwise_norm_option():
    configs = config_sequence(make_atoms(), 6, seed=5)
    stats = [committee_stats(*committee_eval(make_committee(), a)) for a in configs]
    hal = HALCalculator(make_committee(), tau_rel=0.1, window=5, norm="atomwise")
    for a in configs:
        a.calc = hal
        a.get_forces()
    fs = sum(np.linalg.norm(s["mean_forces"], axis=1).sum() for s in stats[:5])
    gs = sum(np.linalg.norm(s["grad_sigma"], axis=1).sum() for s in stats[:5])
    assert hal.results["tau"] == pytest.approx(0.1 * fs / gs, rel=1e-12)


def test_sum_with_spring():
    com, atoms = make_committee(), make_atoms()
    hal = HALCalculator(com, tau=0.5)
    spring = Spring()
    atoms.calc = SumCalculator([hal, spring])
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    a2 = atoms.copy()
    a2.calc = HALCalculator(make_committee(), tau=0.5)
    e_h, f_h = a2.get_potential_energy(), a2.get_forces()
    a2.calc = Spring()
    e_s, f_s = a2.get_potential_energy(), a2.get_forces()
    assert e == pytest.approx(e_h + e_s, abs=1e-12)
    np.testing.assert_allclose(f, f_h + f_s, atol=1e-12)
    assert len(hal.history) == 1 and com.ncalls == 1


def test_fixed_tau_md_conserves_hal_energy():
    atoms = make_atoms(n=5)
    atoms.set_masses([12.0] * 5)
    hal = HALCalculator(make_committee(), tau=1.0)
    atoms.calc = hal
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    etot = []
    for _ in range(200):
        dyn.run(1)
        etot.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())
    etot = np.array(etot)
    assert np.all(np.isfinite(etot))
    assert np.ptp(etot) < 2e-3  # conservative: the bias force is −∇(−τσ)
    assert len(hal.history) == 201  # initial forces + one evaluation per step


def test_bad_parameters():
    com = make_committee()
    with pytest.raises(HALError):
        HALCalculator(com)  # neither
    with pytest.raises(HALError):
        HALCalculator(com, tau=0.1, tau_rel=0.1)  # both
    with pytest.raises(HALError):
        HALCalculator(com, tau=-1.0)
    with pytest.raises(HALError):
        HALCalculator(com, tau_rel=0.1, window=0)
    with pytest.raises(HALError):
        HALCalculator(com, tau_rel=0.1, norm="max")
    with pytest.raises(HALError):
        HALCalculator(object(), tau=0.1)


def test_committee_without_member_forces_is_an_error():
    from ase.calculators.emt import EMT

    atoms = make_atoms()
    atoms.calc = HALCalculator(EMT(), tau=0.1)
    with pytest.raises(HALError, match="member_forces"):
        atoms.get_forces()


# ---------------------------------------------------------------------- stop criterion
def _ensembles(k=4, n=6, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=1.0, size=(n, 3))
    agree = base[None] + 1e-3 * rng.normal(size=(k, n, 3))
    disagree = agree.copy()
    disagree[:, 2] += 5.0 * rng.normal(size=(k, 3))  # atom 2: members far apart
    return agree, disagree


def test_relative_force_uncertainty_by_hand():
    agree, disagree = _ensembles()
    k, n, _ = disagree.shape
    f = relative_force_uncertainty(disagree, eps=0.2)
    for i in range(n):
        fbar = disagree[:, i].mean(0)
        num = np.mean([np.linalg.norm(disagree[m, i] - fbar) for m in range(k)])
        assert f[i] == pytest.approx(num / (np.linalg.norm(fbar) + 0.2), rel=1e-12)
    assert np.argmax(f) == 2
    assert relative_force_uncertainty(agree).max() < 0.01


def test_softmax_values():
    assert max_softmax([1.0, 1.0, 1.0]) == pytest.approx(1 / 3)
    assert max_softmax([0.0, 0.0, 3.0]) == pytest.approx(np.exp(3) / (2 + np.exp(3)))
    assert max_softmax([1000.0, 0.0]) == pytest.approx(1.0)  # no overflow
    assert softmax_stop([0.0, 0.0, 3.0]) and not softmax_stop([1.0, 1.0, 1.0])
    assert max_stop([0.1, 0.6], 0.5) and not max_stop([0.1, 0.4], 0.5)


def test_stop_fires_on_disagreement_only():
    agree, disagree = _ensembles()
    fa, fd = relative_force_uncertainty(agree), relative_force_uncertainty(disagree)
    assert softmax_stop(fd, 0.5) and not softmax_stop(fa, 0.5)
    assert max_stop(fd, 0.5) and not max_stop(fa, 0.5)
    for crit in (StopCriterion(), StopCriterion("softmax", 0.5, 0.2), StopCriterion("max", 0.5)):
        assert crit(disagree) is True
        assert crit(agree) is False
    assert StopCriterion().tol == 0.5
    with pytest.raises(HALError):
        StopCriterion("max")  # needs f_tol
    with pytest.raises(HALError):
        StopCriterion("median", 0.5)


def test_hal_records_stop_and_f():
    com, atoms = make_committee(), make_atoms()
    crit = StopCriterion("max", tol=1e-6)
    hal = HALCalculator(com, tau=0.2, stop=crit)
    atoms.calc = hal
    atoms.get_forces()
    e, f = committee_eval(com, atoms)
    frel = relative_force_uncertainty(f, crit.eps)
    np.testing.assert_allclose(hal.results["rel_force_uncertainty"], frel)
    assert hal.results["stop"] is True and hal.history[-1].stop is True
    assert hal.history[-1].f_max == pytest.approx(frel.max())
    assert hal.history[-1].softmax_max == pytest.approx(max_softmax(frel))
    assert hal.history[-1].sigma == pytest.approx(e.std())


# ---------------------------------------------------------------------- HAL run in the MD engine
def _hal_md(stop, n_frames=300, record_every=1, committee=None, seed=3):
    from rarelearn.md.dynamics import run_md
    from rarelearn.learning.hal import HALMonitor

    atoms = make_atoms(n=5)
    calc = HALCalculator(committee or make_committee(k=4), tau_rel=0.2, window=20, stop=stop)
    mon = HALMonitor(calc)
    fr = run_md(atoms, calc, temperature_K=300.0, n_frames=n_frames, timestep_fs=0.5, seed=seed,
                record_every=record_every, thermostat="langevin", stop_when=mon)
    return fr, mon, calc


def test_engine_stop_keeps_the_firing_frame_and_its_reason():
    """run_md's stop_when: the run ends at the step the HAL criterion fires, that frame is the
    last one kept (even off the record_every grid), and the reason is the criterion's."""
    # 1) unstopped run: the score at every step
    free, mon, _ = _hal_md(StopCriterion("max", tol=1e9))
    assert free.attrs["stop_reason"] == "completed" and not free.attrs["stop_requested"]
    score = np.array([mon.per_step[k][2] for k in range(1, 301)])
    # 2) a tolerance first crossed at a step that is not a multiple of record_every = 3
    running = np.maximum.accumulate(score)
    s = next(k for k in range(60, 300) if k % 3 and score[k - 1] > running[k - 2] + 1e-3)
    tol = 0.5 * (score[s - 1] + running[s - 2])
    fr, mon2, calc = _hal_md(StopCriterion("max", tol=tol), record_every=3)
    assert mon2.fired_at == s
    assert fr.attrs["stop_requested"] is True
    assert fr.attrs["stop_reason"].startswith("HAL stop criterion fired: max score")
    assert fr.attrs["steps_done"] == s
    steps = fr.extras["step"]
    assert steps[-1] == s and s % 3 != 0
    np.testing.assert_array_equal(steps[:-1], np.arange(3, s, 3))
    # the kept frame is the configuration the committee judged: same positions as the free run
    np.testing.assert_allclose(fr.positions[-1], free.positions[s - 1], atol=1e-10)
    assert StopCriterion("max", tol=tol)(committee_eval(make_committee(k=4), free.to_atoms(s - 1))[1])
    assert not StopCriterion("max", tol=tol)(committee_eval(make_committee(k=4), free.to_atoms(s - 2))[1])
    # and the HAL calculator was not called again after the stop
    assert len(calc.history) == s + 1  # the start configuration + one evaluation per step


class _NaNAfter(MorseCommittee):
    """The Morse committee, but every member energy is NaN from call ``n`` on."""

    def __init__(self, n, **kw):
        c = make_committee(k=4)
        super().__init__(c.D, c.a, c.r0, **kw)
        self.n = n

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.ncalls > self.n:
            self.results["energies"] = np.full(len(self.D), np.nan)


def test_blowup_during_a_hal_run_stops_cleanly_without_the_bad_frame():
    fr, mon, _ = _hal_md(StopCriterion("softmax", tol=0.99), committee=_NaNAfter(41))
    assert not fr.attrs["stop_requested"] and mon.fired_at is None
    assert "non-finite energy" in fr.attrs["stop_reason"]
    assert len(fr) == 40 and fr.extras["step"][-1] == 40  # call 1 is step 0; step 41 blew up


def test_langevin_seeds_are_valid_for_every_seed():
    """fix langevin takes seeds 1..900000000 only: a HAL run (Langevin) must start for any seed."""
    from rarelearn.md.engine import _lammps_seeds

    seeds = [_lammps_seeds(s) for s in range(2000, 2200)]
    assert all(0 < lseed <= 900_000_000 and 0 < vseed < 2**31 for vseed, lseed in seeds)
    bad = next(s for s in range(2000, 2200)
               if np.random.default_rng(s).integers(1, 2**31 - 2, size=2)[1] > 900_000_000)
    fr, _, _ = _hal_md(StopCriterion("max", tol=1e9), n_frames=5, seed=bad)
    assert fr.attrs["stop_reason"] == "completed" and len(fr) == 5


# ---------------------------------------------------------------------- the hal sampler's steps
@pytest.fixture(scope="module")
def random_ani(tmp_path_factory):
    """Butane (unrelaxed) as the workflow writes it, and two random, tamed ANI members: they
    disagree, which is all a HAL run needs."""
    import torch

    from conftest import write_prepared_butane
    from rarelearn.models.ani import build_networks, make_spec
    from rarelearn.models.files import save_ensemble

    d = tmp_path_factory.mktemp("hal_steps")
    write_prepared_butane(d)
    spec = make_spec(["H", "C"], {"H": [8], "C": [8]}, {"H": -10.0, "C": -40.0})
    states = []
    for k in range(2):
        torch.manual_seed(k)
        net = build_networks(spec)
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(0.1)  # small energies and forces: no blow-up within a few dozen steps
        states.append(net.state_dict())
    save_ensemble(d / "ensemble.pt", states, spec)
    return d


def _sampler(**over):
    cfg = {"kind": "hal", "tau_rel": 0.1, "window": 10, "runs": 1, "temperature_K": 500.0, "max_steps": 40,
           "record_every": 10, "fallback": "most_uncertain", "seed": 0,
           "stop": {"kind": "max", "tol": 1e9, "eps": 0.2}}
    for k, v in over.items():
        if k.startswith("stop_"):
            cfg["stop"][k[5:]] = v
        else:
            cfg[k] = v
    return cfg


def test_hal_run_and_selection_hand_over_the_right_frames(random_ani):
    from rarelearn.dataset import read_frames
    from rarelearn.steps.sample import hal_run
    from rarelearn.steps.select import hal_select_step

    d = random_ani
    mol, ens = d / "molecule.xyz", d / "ensemble.pt"
    # never fires: the most uncertain recorded frame is handed over ...
    quiet = hal_run(mol, ens, _sampler(), 0.5, seed=5, out=d / "quiet.h5", iteration=3)
    assert quiet.attrs["stop_reason"] == "completed" and quiet.attrs["hal_fired"] is False
    np.testing.assert_array_equal(quiet.extras["step"], [10, 20, 30, 40])
    assert np.isfinite(quiet.extras["hal_score"]).all() and (quiet.extras["hal_sigma"] > 0).all()
    assert quiet.attrs["hal_pick"] == int(np.argmax(quiet.extras["hal_score"]))
    assert (quiet.source == "hal").all() and (quiet.iteration == 3).all()
    # ... or nothing
    none = hal_run(mol, ens, _sampler(fallback="none"), 0.5, seed=5, out=d / "none.h5", iteration=3)
    assert none.attrs["hal_pick"] == -1
    np.testing.assert_allclose(none.positions, quiet.positions)  # same seed, same run
    # fires at once (any disagreement > 1e-9): the firing step 1 is kept although off the grid
    hot = hal_run(mol, ens, _sampler(stop_tol=1e-9), 0.5, seed=6, out=d / "hot.h5", iteration=3)
    assert hot.attrs["hal_fired"] is True and hot.attrs["stop_reason"].startswith("HAL stop criterion fired")
    assert len(hot) == 1 and hot.extras["step"][0] == 1 and hot.attrs["hal_pick"] == 0
    # the selection takes exactly the handed-over frames, plus noisy copies
    sel_cfg = {"augment_copies": 2, "augment_amplitude": 0.05, "seed": 0}
    summary = hal_select_step([d / "quiet.h5", d / "none.h5", d / "hot.h5"], sel_cfg, batch_size=4, iteration=3,
                              out_dir=d / "selected")
    assert summary["selected"] == 2 and summary["augmented"] == 4 and summary["fired"] == 1
    batches = sorted((d / "selected").glob("batch_*.h5"))
    assert len(batches) == summary["batches"] == 2
    new = [read_frames(b) for b in batches]
    hashes = {h for fr in new for h, s in zip(fr.hashes, fr.source) if s == "hal"}
    picks = {quiet.hashes[quiet.attrs["hal_pick"]], hot.hashes[0]}
    assert hashes == picks
    assert all((fr.status == "unlabelled").all() and (fr.iteration == 3).all() for fr in new)
    assert sum(int((fr.source == "augment").sum()) for fr in new) == 4
