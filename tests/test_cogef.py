"""COGEF profiles against closed-form answers (Morse bonds), and on hexane with GFN2-xTB."""
import math

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from scipy.optimize import minimize_scalar

from rarelearn.md.cogef import cogef_profile
from rarelearn.units import EV_PER_KCAL_MOL


class MorseBonds(Calculator):
    """Morse bonds between listed atom pairs only: E = Σ D (1 − exp(−a (r − r0)))²."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, bonds, **kw):
        super().__init__(**kw)
        self.bonds = bonds  # [(i, j, D, a, r0)]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        pos = self.atoms.positions
        e, f = 0.0, np.zeros_like(pos)
        for i, j, d, a, r0 in self.bonds:
            v = pos[j] - pos[i]
            r = np.linalg.norm(v)
            y = math.exp(-a * (r - r0))
            e += d * (1 - y) ** 2
            de_dr = 2 * d * a * y * (1 - y)
            f[i] += de_dr * v / r
            f[j] -= de_dr * v / r
        self.results = {"energy": e, "forces": f}


def morse(x, d, a):
    return d * (1 - math.exp(-a * x)) ** 2


def morse_force(x, d, a):
    y = math.exp(-a * x)
    return 2 * d * a * y * (1 - y)


def test_dimer_profile_and_force_maximum_are_the_morse_curve():
    d, a, r0 = 4.0, 2.0, 1.5
    atoms = Atoms("C2", positions=[(0, 0, 0), (r0, 0, 0)])
    p = cogef_profile(atoms, MorseBonds([(0, 1, d, a, r0)]), (0, 1), step=0.05, max_extension=2.0,
                      fmax=1e-4, post_break_extension=0.2)
    expected = np.array([morse(x, d, a) for x in p.extension])
    assert np.abs(p.energy - expected).max() < 1e-6
    assert np.abs(p.force - [morse_force(x, d, a) for x in p.extension]).max() < 1e-4
    # F_max = a·D/2 at x = ln 2 / a, between grid points: the parabola refines it
    assert p.f_max == pytest.approx(a * d / 2, abs=1e-3)
    assert p.extension_at_f_max == pytest.approx(math.log(2) / a, abs=5e-3)
    # the shared break rule: C–C past 2 × 2 × 0.76 = 3.04 Å, i.e. Δ > 1.54 Å
    assert p.broke and p.brk.bond == (0, 1) and p.brk.elements == "C-C"
    assert 1.54 < p.break_extension <= 1.55 + 1e-9
    assert p.extension[-1] == pytest.approx(1.55 + 0.2, abs=1e-6)   # the scan goes on 0.2 Å past it
    # a lone bond lets go gradually: E at F_max is D/4, and E_max, read where the bond passes
    # its break length on a curve that still rises, lies 2.6 eV past it
    assert p.e_at_f_max == pytest.approx(d / 4, abs=2e-3)
    assert p.e_max_past_f_max == pytest.approx(morse(p.extension_at_max, d, a) - d / 4, abs=2e-3)
    assert p.e_max_past_f_max > 2.5
    s = p.summary()
    assert s["e_at_f_max"] == p.e_at_f_max and s["e_max_past_f_max"] == p.e_max_past_f_max


def _chain_turning_point(d1, a1, d2, a2, n_strong):
    """End of the intact branch of a weak Morse bond in series with n strong ones, pulled
    at fixed total length: equal tension F in every bond, L(x1) = x1 + n·x2(F(x1)) has a
    local maximum Δ* (the branch ends there); E* = M1(x1*) + n·M2(x2*)."""
    def x2_of(force):
        y = (1 + math.sqrt(1 - 2 * force / (a2 * d2))) / 2   # stable root of 2 a D y (1 − y) = F
        return -math.log(y) / a2

    def length(x1):
        return x1 + n_strong * x2_of(morse_force(x1, d1, a1))

    res = minimize_scalar(lambda x: -length(x), bounds=(math.log(2) / a1, 3.0 / a1), method="bounded",
                          options={"xatol": 1e-12})
    x1 = res.x
    x2 = x2_of(morse_force(x1, d1, a1))
    return length(x1), morse(x1, d1, a1) + n_strong * morse(x2, d2, a2)


def test_chain_e_max_is_the_end_of_the_intact_branch_to_1e_3():
    # weak bond 1-2 (D 1, a 2) between three compliant strong bonds (D 5, a 0.5): the intact
    # branch ends at a fold, the weak bond snaps and the energy drops (as hexane's does)
    d1, a1, d2, a2, r0 = 1.0, 2.0, 5.0, 0.5, 1.5
    atoms = Atoms("C5", positions=[(k * r0, 0, 0) for k in range(5)])
    bonds = [(0, 1, d2, a2, r0), (1, 2, d1, a1, r0), (2, 3, d2, a2, r0), (3, 4, d2, a2, r0)]
    delta_star, e_star = _chain_turning_point(d1, a1, d2, a2, 3)
    p = cogef_profile(atoms, MorseBonds(bonds), (0, 4), step=0.1, max_extension=4.0, fmax=1e-4,
                      refine_tol_kcal=0.01, max_opt_steps=5000)
    assert p.broke and p.brk.bond == (1, 2)
    assert p.e_max == pytest.approx(e_star, abs=1e-3)
    assert p.extension_at_max == pytest.approx(delta_star, abs=5e-3)
    assert p.f_max == pytest.approx(a1 * d1 / 2, abs=1e-3)
    assert p.refine_converged and p.refinement[-1]["bound"] < 0.01 * EV_PER_KCAL_MOL
    # the energy drops past the maximum; afterwards only the weak bond's Morse tail is left
    assert p.energy[p.brk.index] < p.e_max - 0.1
    assert 0 < p.post_break_rise < d1 - p.energy[p.brk.index]
    # the chain snaps just past its force maximum: almost none of E_max lies beyond it
    assert 0 <= p.e_max_past_f_max < 0.02 * p.e_max
    # the coarse scan alone would have missed the maximum by more than the tolerance
    coarse = p.energy[p.intact & ~p.refined].max()
    assert e_star - coarse > 0.1 * EV_PER_KCAL_MOL


def test_a_symmetric_chain_leaves_its_saddle_and_e_max_does_not_depend_on_the_start():
    """Two weak Morse bonds, each between compliant strong ones, pulled at the ends, stretch
    alike; past the point where the antisymmetric mode (one weak bond longer, the other
    shorter) turns negative that symmetric path is a saddle, on which a plain relaxation
    from the symmetric start stays (no gradient along the mode), and its E_max is how far
    the scan got there. The stable-branch scan leaves the saddle: its E_max is the end of
    the stable intact branch, the same from a symmetric start and from displaced ones."""
    from rarelearn.md.cogef import lowest_constrained_mode

    r0 = 1.5
    atoms = Atoms("C6", positions=[(k * r0, 0, 0) for k in range(6)])
    strong, weak = (5.0, 0.5), (1.0, 2.0)
    calc = MorseBonds([(0, 1, *strong, r0), (1, 2, *weak, r0), (2, 3, *strong, r0), (3, 4, *weak, r0),
                       (4, 5, *strong, r0)])
    kw = dict(step=0.1, max_extension=4.0, fmax=1e-4, max_opt_steps=5000, refine_tol_kcal=0.01)
    plain = cogef_profile(atoms, calc, (0, 5), stable_branch=False, **kw)
    assert not plain.unstable_images
    e_max = []
    for seed in (None, 0, 1):
        a = atoms.copy()
        if seed is not None:   # displaced along the chain (a linear chain has no other stiffness)
            a.positions[:, 0] += np.random.default_rng(seed).normal(0.0, 0.02, 6)
        p = cogef_profile(a, calc, (0, 5), **kw)
        assert p.broke and p.brk.bond in ((1, 2), (3, 4)) and p.refine_converged
        top = a.copy()
        top.positions = p.frames.positions[int(np.argmax(np.where(p.intact, p.energy, -np.inf)))]
        assert lowest_constrained_mode(top, calc, (0, 5))[0] > -0.006     # a minimum (to the tolerance)
        e_max.append(p.e_max)
        if seed is None:
            assert p.unstable_images and p.unstable_images[0]["eigenvalue"] < -0.005
            assert p.summary()["left_saddle_at"] == p.unstable_images[0]["extension"]
    assert max(e_max) - min(e_max) < 1e-3
    # a coarser threshold lets the scan climb further along the saddle before it leaves it
    coarse = cogef_profile(atoms, calc, (0, 5), instability_tol=0.05, **kw)
    assert coarse.e_max > e_max[0] + 1e-3 and coarse.extension_at_max > p.extension_at_max
    assert plain.e_max > e_max[0] + 0.1          # the saddle path went on climbing
    # the mode that turned negative on the saddle path is the antisymmetric one
    saddle = atoms.copy()
    k = int(np.argmin(np.abs(plain.extension - 3.0)))
    saddle.positions = plain.frames.positions[k]
    w, mode = lowest_constrained_mode(saddle, calc, (0, 5))
    assert w < -0.05 and np.sign(mode[1, 0] - mode[2, 0]) != np.sign(mode[3, 0] - mode[4, 0])


def test_profile_without_a_break_says_so():
    atoms = Atoms("C2", positions=[(0, 0, 0), (1.5, 0, 0)])
    p = cogef_profile(atoms, MorseBonds([(0, 1, 4.0, 2.0, 1.5)]), (0, 1), step=0.1, max_extension=1.0)
    assert not p.broke and math.isnan(p.break_extension) and math.isnan(p.post_break_rise)
    s = p.summary()
    assert s["broke"] is False and s["broken_bond"] is None
    assert s["e_max"] == pytest.approx(morse(1.0, 4.0, 2.0), abs=1e-4)


def test_bad_pull_atoms_are_refused():
    atoms = Atoms("C2", positions=[(0, 0, 0), (1.5, 0, 0)])
    with pytest.raises(ValueError, match="pull atoms"):
        cogef_profile(atoms, MorseBonds([(0, 1, 4.0, 2.0, 1.5)]), (0, 2))


def test_hexane_gfn2_profile_rises_breaks_a_cc_bond_and_is_flat_after():
    from rarelearn.chem.labellers import make_labeller
    from rarelearn.chem.molecules import build_alkane, terminal_carbons

    atoms = build_alkane(6)
    lab = make_labeller("gfn2-xtb")
    p = cogef_profile(atoms, lab.calculator(), terminal_carbons(atoms), step=0.1, max_extension=3.0,
                      post_break_extension=0.4, label_as=lab.name)
    assert p.broke and p.brk.elements == "C-C"
    # the stable branch ends just past the force maximum (~4.6 eV/Å at Δ ≈ 1.98 Å, E_max 5.75 eV
    # at Δ 1.965 Å): past it the symmetric path (both terminal bonds alike) is a saddle; the
    # plain scan stayed on it to Δ 2.47 Å and read 7.88 eV; with a threshold of 0.05 eV/Å² the
    # stable-branch scan read 5.83
    assert 5.6 < p.e_max < 5.8 and abs(p.extension_at_max - p.extension_at_f_max) < 0.05
    assert 4.0 < p.f_max < 5.2
    assert p.unstable_images and p.unstable_images[0]["eigenvalue"] < -0.005
    assert p.refine_converged
    assert abs(p.post_break_rise) < 0.3            # 0.4 Å past the break the fragments barely interact
    assert (p.frames.status == "ok").all() and np.isfinite(p.frames.energy).all()
    assert np.allclose(p.frames.energy - p.e0, p.energy)


def test_same_bond_up_to_the_symmetry_about_the_pulled_atoms(tmp_path):
    """Butane pulled end to end: its two terminal C–C bonds sit at the same place along the load
    path, the middle one does not; a COGEF comparison counts the first pair as the same bond."""
    from conftest import write_prepared_butane

    from rarelearn.chem.breaks import bond_position
    from rarelearn.chem.molecules import load_prepared_molecule
    from rarelearn.learning.evaluation import cogef_comparison

    mol, g1, g2 = load_prepared_molecule(write_prepared_butane(tmp_path))
    pull = (g1[0], g2[0])
    carbons = [i for i, z in enumerate(mol.numbers) if z == 6]
    chain = sorted(carbons, key=lambda i: np.linalg.norm(mol.positions[i] - mol.positions[pull[0]]))
    ends = [(chain[0], chain[1]), (chain[2], chain[3])]
    middle = (chain[1], chain[2])
    pos = lambda b: bond_position(mol.numbers, mol.positions, pull, b)  # noqa: E731
    assert pos(ends[0]) == pos(ends[1]) != pos(middle)
    assert pos(ends[0])[1] == ((0.0, 1.0), (2.0, 3.0))
    prof = {"broke": True, "e_max": 1.0, "f_max": 1.0, "extension": [0.0, 1.0], "energy": [0.0, 1.0],
            "break_extension": 1.0}
    same = lambda a, b: pos(a) == pos(b)  # noqa: E731
    assert cogef_comparison({**prof, "broken_bond": ends[0]}, {**prof, "broken_bond": ends[1]}, same)["cogef_same_bond"]
    assert not cogef_comparison({**prof, "broken_bond": ends[0]}, {**prof, "broken_bond": ends[1]})["cogef_same_bond"]
    assert not cogef_comparison({**prof, "broken_bond": middle}, {**prof, "broken_bond": ends[1]}, same)["cogef_same_bond"]


def test_smd_pulls_that_break_another_bond_than_the_reference_are_named_and_never_converged(tmp_path):
    """Hexane's pulls under GFN2-xTB break a terminal C–C bond, the campaigns' potentials
    often an inner one: the evaluation counts the potential's replicas that broke where the
    reference's did (up to the symmetry about the pulled atoms), names both sides' bonds, and
    the stop rule never counts a potential whose pulls mostly break another bond."""
    from conftest import write_prepared_butane

    from rarelearn.chem.molecules import load_prepared_molecule
    from rarelearn.learning.evaluation import smd_bond_comparison, smd_bonds_text, stop_rule_met
    from rarelearn.steps.evaluate import _same_place

    path = write_prepared_butane(tmp_path)
    mol, g1, g2 = load_prepared_molecule(path)
    carbons = [i for i, z in enumerate(mol.numbers) if z == 6]
    chain = sorted(carbons, key=lambda i: np.linalg.norm(mol.positions[i] - mol.positions[g1[0]]))
    end0, end1, middle = (chain[0], chain[1]), (chain[2], chain[3]), (chain[1], chain[2])

    def rec(bond):
        label = "none" if bond is None else f"C-C {min(bond)}-{max(bond)}"
        return {"broke": bond is not None, "broken_bond": None if bond is None else list(bond), "broken_label": label}

    ref = [rec(end0), rec(end0), rec(end1)]
    same = _same_place(path)
    # the other terminal bond is the same place; the middle one is not; unbroken replicas are not counted
    c = smd_bond_comparison([rec(end1), rec(middle), rec(middle), rec(None)], ref, same)
    assert c["smd_same_bond_fraction"] == pytest.approx(1 / 3) and c["smd_same_bond_replicas"] == 1
    assert sorted(c["nnp_smd_bonds"].split(", ")) == sorted([f"C-C {min(end1)}-{max(end1)} ×1",
                                                             f"C-C {min(middle)}-{max(middle)} ×2"])
    assert c["ref_smd_bonds"].endswith("×1") and "×2" in c["ref_smd_bonds"]
    # without the molecule only the same atom pair counts
    assert smd_bond_comparison([rec(end1)], ref)["smd_same_bond_fraction"] == 1.0
    assert smd_bond_comparison([rec(end1)], [rec(end0)])["smd_same_bond_fraction"] == 0.0
    assert math.isnan(smd_bond_comparison([rec(None)], ref, same)["smd_same_bond_fraction"])
    text = smd_bonds_text({**c, "nnp_n_replicas": 3})
    assert "another bond than the reference's in 2 of 3 replicas" in text
    assert smd_bonds_text({**smd_bond_comparison([rec(end1)], ref, same), "nnp_n_replicas": 1}) == ""
    # the stop rule: |ΔE_a| within target is not enough when most pulls break another bond
    rule = {"enabled": True, "observable": "smd", "target_kcal": 1.0, "max_stderr_kcal": 0.5,
            "cogef_target_kcal": 1.0, "consecutive": 1}
    good = {"abs_delta_ea_kcal": 0.4, "delta_ea_stderr_kcal": 0.3}
    assert stop_rule_met([good], rule)                                   # made before the comparison
    assert not stop_rule_met([{**good, **c}], rule)                       # 1 of 3 at the reference's bond
    assert stop_rule_met([{**good, **smd_bond_comparison([rec(end1), rec(end0), rec(middle)], ref, same)}], rule)
    assert not stop_rule_met([{**good, "smd_same_bond_fraction": math.nan}], rule)
    # ... and a COGEF profile that breaks another bond is not converged either
    cogef_rule = {**rule, "observable": "cogef"}
    assert stop_rule_met([{"cogef_abs_delta_e_max_kcal": 0.3, "cogef_same_bond": True}], cogef_rule)
    assert not stop_rule_met([{"cogef_abs_delta_e_max_kcal": 0.3, "cogef_same_bond": False}], cogef_rule)


class SnapBond(Calculator):
    """One C–C pair: E(r) = k (r − r0)² s(r), s = 1 / (1 + exp((r − r_snap) / w)): a bond that
    stiffens up to r_snap = 2.2 Å and then lets go, the energy falling to 0 while the two atoms
    are still closer than the 3.04 Å break length."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, k=3.0, r0=1.54, r_snap=2.2, w=0.01):
        super().__init__()
        self.k, self.r0, self.r_snap, self.w = k, r0, r_snap, w

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        d = atoms.positions[1] - atoms.positions[0]
        r = float(np.linalg.norm(d))
        s = 1.0 / (1.0 + math.exp((r - self.r_snap) / self.w))
        e = self.k * (r - self.r0) ** 2 * s
        de = 2 * self.k * (r - self.r0) * s - self.k * (r - self.r0) ** 2 * s * (1 - s) / self.w
        f = np.zeros((2, 3))
        f[1] = -de * d / r
        f[0] = -f[1]
        self.results = {"energy": e, "forces": f}


def test_an_energy_drop_is_the_break_even_below_the_break_length():
    """A profile whose energy drops by more than drop_tol has broken there, though no bond is
    past its break length: E_max is the top of the intact branch, the break is at the drop, the
    scan goes on post_break_extension past it, and the drop's images are not intact."""
    atoms = Atoms("C2", positions=[(0, 0, 0), (1.54, 0, 0)])
    p = cogef_profile(atoms, SnapBond(), (0, 1), step=0.1, max_extension=3.0, post_break_extension=0.2,
                      fmax=1e-4, relax_start=False, max_refinements=6)
    assert p.broke and p.brk.bond == (0, 1) and p.brk.elements == "C-C"
    assert 0.6 < p.break_extension < 0.75                  # the drop near r = 2.2 Å, far below 3.04 Å
    assert p.stop_reason == "past the break" and p.extension[-1] < 1.0
    assert np.all(np.linalg.norm(p.frames.positions[:, 1] - p.frames.positions[:, 0], axis=1) < 3.04)
    assert p.e_max == pytest.approx(p.energy[p.intact].max()) and p.e_max > 1.0
    assert not p.intact[p.extension >= p.break_extension].any()
    assert p.energy[p.extension >= p.break_extension].max() < p.e_max - 0.5
    # with the drop rule off (an infinite tolerance) the same scan sees no break at all
    q = cogef_profile(atoms, SnapBond(), (0, 1), step=0.1, max_extension=1.2, post_break_extension=0.2,
                      fmax=1e-4, relax_start=False, max_refinements=0, drop_tol=math.inf)
    assert not q.broke and q.intact.all()


def test_delta_e_max_splits_into_the_loaded_chain_and_where_it_gives_way():
    """A potential whose intact branch lies c above the reference's and ends h later: the
    comparison reads c on the last shared intact image and h as the break shift, and ΔE_max
    is c plus about F_max × h."""
    from rarelearn.learning.evaluation import cogef_comparison
    from rarelearn.units import KCAL_MOL_PER_EV

    k, c, h = 1.2, 0.01, 0.05                       # eV/Å², eV, Å
    def profile(end, shift):
        x = np.round(np.arange(0.0, end + 1e-9, 0.025), 4)
        e = 0.5 * k * x ** 2 + shift
        x_all = np.concatenate([x, x[-1] + np.arange(1, 6) * 0.1])
        e_all = np.concatenate([e, np.full(5, e[-1] - 1.0)])   # the drop past the break
        return {"broke": True, "e_max": float(e[-1]), "f_max": k * end, "extension": x_all.tolist(),
                "energy": e_all.tolist(), "break_extension": float(x[-1]), "broken_bond": [0, 1]}
    ref, late = profile(2.0, 0.0), profile(2.0 + h, c)
    cmp = cogef_comparison(late, ref)
    assert cmp["cogef_intact_extension"] == pytest.approx(1.975)            # the last image before 2.0
    assert cmp["cogef_intact_delta_kcal"] == pytest.approx(c * KCAL_MOL_PER_EV)
    assert cmp["cogef_break_shift"] == pytest.approx(h)
    split = cmp["cogef_intact_delta_kcal"] + ref["f_max"] * h * KCAL_MOL_PER_EV
    assert cmp["cogef_delta_e_max_kcal"] == pytest.approx(split, rel=0.05)
    assert cmp["cogef_delta_e_max_kcal"] > 4 * cmp["cogef_intact_delta_kcal"]  # the shift dominates
    unbroken = cogef_comparison({**late, "broke": False}, ref)
    assert math.isnan(unbroken["cogef_break_shift"]) and unbroken["cogef_intact_delta_kcal"] == pytest.approx(
        c * KCAL_MOL_PER_EV)


def test_the_loaded_chain_is_compared_on_the_potentials_intact_images_only():
    """A potential that breaks a rounding error past a reference image (refinements of both
    scans land on the same extensions): its loaded chain is read on its last intact image,
    not interpolated into the drop of its break (hexane, /tmp/dense iteration 0: −32.9
    kcal/mol read where the chain was 3.0 low)."""
    from rarelearn.learning.evaluation import cogef_comparison
    from rarelearn.units import KCAL_MOL_PER_EV

    k, c = 1.2, 0.01
    def profile(x_intact, x_broken, shift):
        x = np.array(list(x_intact) + list(x_broken))
        e = 0.5 * k * x ** 2 + shift
        n = len(x_intact)
        e[n:] -= 1.0
        return {"broke": True, "e_max": float(e[n - 1]), "f_max": k * x_intact[-1], "extension": x.tolist(),
                "energy": e.tolist(), "intact": [True] * n + [False] * len(x_broken),
                "break_extension": float(x_broken[0]), "broken_bond": [0, 1]}
    grid = [0.0, 0.5, 1.0, 1.5, 1.9, 1.95, 1.9640625, 1.96484375]
    ref = profile(grid, [1.965625, 2.0], 0.0)
    nnp = profile(grid[:-1], [1.96484375 + 3e-14, 2.0], c)
    cmp = cogef_comparison(nnp, ref)
    assert cmp["cogef_intact_extension"] == pytest.approx(1.9640625)
    assert cmp["cogef_intact_delta_kcal"] == pytest.approx(c * KCAL_MOL_PER_EV)
    assert cmp["cogef_rmse_to_break_kcal"] == pytest.approx(c * KCAL_MOL_PER_EV)


def test_energies_at_the_force_maximum_are_compared_and_read_from_older_summaries():
    """Two Morse bonds, D 4 and 4.2 eV: at its force maximum each profile is at D/4, so the
    comparison reads 0.05 eV there, whatever the break; a summary written before
    ``e_at_f_max`` existed gives the same figures from its arrays."""
    from rarelearn.learning.evaluation import cogef_comparison
    from rarelearn.units import KCAL_MOL_PER_EV

    def summary(d):
        atoms = Atoms("C2", positions=[(0, 0, 0), (1.5, 0, 0)])
        return cogef_profile(atoms, MorseBonds([(0, 1, d, 2.0, 1.5)]), (0, 1), step=0.05, max_extension=2.0,
                             fmax=1e-4, post_break_extension=0.1).summary()
    nnp, ref = summary(4.2), summary(4.0)
    cmp = cogef_comparison(nnp, ref)
    assert cmp["cogef_delta_e_at_f_max_kcal"] == pytest.approx(0.05 * KCAL_MOL_PER_EV, abs=0.1)
    assert cmp["ref_cogef_e_max_past_f_max_kcal"] == pytest.approx(ref["e_max_past_f_max"] * KCAL_MOL_PER_EV)
    assert cmp["cogef_e_max_past_f_max_kcal"] > 50
    old = [{k: v for k, v in r.items() if k not in ("e_at_f_max", "e_max_past_f_max")} for r in (nnp, ref)]
    again = cogef_comparison(*old)
    for key in ("cogef_delta_e_at_f_max_kcal", "cogef_e_max_past_f_max_kcal", "ref_cogef_e_max_past_f_max_kcal"):
        assert again[key] == pytest.approx(cmp[key], abs=1e-9)


def test_a_reference_scan_that_ends_without_a_break_says_why():
    """The labeller failing on an image (GFN2-xTB's SCF on undecane at Δ 3.5 Å) is named as the
    reason, not a too-short scan; a scan that reached its extent asks for a longer one."""
    from rarelearn.steps.reference import no_break_message

    failed = {"extension": [0.0, 3.4], "stop_reason": "calculation failed at Δ = 3.5000 Å: SCF not converged in 250 cycles"}
    msg = no_break_message(failed, "results/reference/molecules/C11/molecule.xyz")
    assert "SCF not converged in 250 cycles" in msg and "Δ = 3.40 Å" in msg and "molecules/C11" in msg
    assert "labeller.options" in msg and "max_extension" not in msg
    short = no_break_message({"extension": [0.0, 4.0], "stop_reason": "max_extension"})
    assert "raise cogef.max_extension" in short and "labeller" not in short


def test_loaded_chains_are_also_compared_at_equal_pulled_distance():
    """A potential whose molecule at rest is 0.1 Å short and whose profile is the reference's
    shifted by that much (the same chain on the pulled distance; E relative to its own rest):
    at equal extension it reads low and breaks late, at equal distance it reads 0 and breaks
    on time. A summary without ``d0`` reads NaN there."""
    from rarelearn.learning.evaluation import cogef_comparison

    k, s = 1.2, 0.1                                   # eV/Å², Å
    def profile(d0, rest):
        x = np.round(np.arange(0.0, 2.5 + 1e-9, 0.025), 4)
        d = d0 + x
        e = np.where(d > rest, 0.5 * k * (d - rest) ** 2, 0.0)        # flat until it is taut
        brk = rest + 2.0 - d0                                         # breaks at distance rest + 2
        intact = x < brk
        e = np.where(intact, e, e - 1.0)
        return {"broke": True, "d0": d0, "e_max": float(e[intact].max()), "f_max": k * 2.0,
                "extension": x.tolist(), "energy": e.tolist(), "intact": intact.tolist(),
                "break_extension": float(x[~intact][0]), "broken_bond": [0, 1]}
    ref, short = profile(5.0, 5.0), profile(5.0 - s, 5.0)
    cmp = cogef_comparison(short, ref)
    assert cmp["cogef_d0_delta"] == pytest.approx(-s)
    assert cmp["cogef_break_shift"] == pytest.approx(s, abs=0.03)         # late by extension
    assert cmp["cogef_break_shift_distance"] == pytest.approx(0.0, abs=0.03)
    assert cmp["cogef_intact_delta_kcal"] < -5.0                          # low by extension
    assert cmp["cogef_intact_delta_at_distance_kcal"] == pytest.approx(0.0, abs=1e-6)
    old = cogef_comparison({k: v for k, v in short.items() if k != "d0"}, ref)
    assert math.isnan(old["cogef_d0_delta"]) and math.isnan(old["cogef_intact_delta_at_distance_kcal"])
