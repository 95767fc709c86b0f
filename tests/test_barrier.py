import math

import numpy as np
import pytest
from ase.build import molecule

from rarelearn.chem.barrier import ReplicaSummary, activation_energy, delta, read_replica, summarize
from rarelearn.chem.breaks import find_break
from rarelearn.chem.barrier import barrier_record, delta_record
from rarelearn.learning.evaluation import stop_rule_met
from rarelearn.dataset import Frames


def test_activation_energy_on_a_hand_made_curve():
    d = np.linspace(6.5, 9.5, 301)
    w = 7.5 * np.exp(-((d - 8.2) ** 2) / 0.5) - 0.3 * (d > 8.2)  # peak at 8.2 Å
    ea, at = activation_energy(w, d)
    assert ea == pytest.approx(w.max())
    assert at == pytest.approx(8.2)
    # non-finite values are ignored, ties go to the first frame
    w2 = np.array([0.0, 1.0, np.nan, 3.0, 3.0, 2.0])
    assert activation_energy(w2, np.arange(6.0)) == (3.0, 3.0)
    with pytest.raises(ValueError):
        activation_energy([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        activation_energy([], [])
    with pytest.raises(ValueError):
        activation_energy([np.nan], [1.0])


def test_summarize_against_numpy():
    v = np.array([7.51, 7.56, 7.68, 7.62])
    s = summarize(v)
    assert isinstance(s, ReplicaSummary)
    assert s.n == 4
    assert s.mean == pytest.approx(v.mean())
    assert s.std == pytest.approx(v.std(ddof=1))
    assert s.stderr == pytest.approx(v.std(ddof=1) / 2.0)
    assert s.values == pytest.approx(v.tolist())
    one = summarize([7.5])
    assert one.mean == 7.5 and one.n == 1
    assert math.isnan(one.stderr) and math.isnan(one.std)
    empty = summarize([])
    assert empty.n == 0 and math.isnan(empty.mean)


def test_delta_combines_standard_errors():
    a, b = summarize([7.0, 7.2, 7.1]), summarize([7.5, 7.56, 7.68, 7.62])
    diff, se = delta(a, b)
    assert diff == pytest.approx(np.mean([7.0, 7.2, 7.1]) - np.mean([7.5, 7.56, 7.68, 7.62]))
    assert se == pytest.approx(math.hypot(a.stderr, b.stderr))
    diff1, se1 = delta(summarize([7.0]), b)
    assert diff1 == pytest.approx(7.0 - b.mean)
    assert math.isnan(se1)


def _stretched_ethane_frames(ccs) -> Frames:
    a = molecule("C2H6")
    axis = a.positions[1] - a.positions[0]
    d0 = np.linalg.norm(axis)
    axis /= d0
    out = []
    for cc in ccs:
        pos = a.positions.copy()
        pos[[0, 2, 3, 4]] -= 0.5 * (cc - d0) * axis
        pos[[1, 5, 6, 7]] += 0.5 * (cc - d0) * axis
        out.append(pos)
    return Frames(numbers=a.numbers, positions=np.stack(out))


def test_find_break_is_the_first_bond_past_twice_its_covalent_radii():
    ccs = [1.53, 1.7, 2.1, 2.9, 3.1, 2.9, 3.5]
    fr = _stretched_ethane_frames(ccs)
    b = find_break(fr.numbers, fr.positions)
    assert b.index == 4 and b.bond == (0, 1) and b.elements == "C-C" and b.label == "C-C 0-1"
    assert b.break_length == pytest.approx(2 * 2 * 0.76) and b.length == pytest.approx(3.1)
    assert find_break(fr.numbers, fr.positions, scale=1.3).index == 2          # 1.98 Å
    assert find_break(fr.numbers, fr.positions[:4]).index is None
    assert find_break(fr.numbers, fr.positions[:0]).index is None
    # the bonds are those of the given start: from a start where C–C is already broken, none breaks
    assert find_break(fr.numbers, fr.positions, start_positions=fr.positions[6]).bond != (0, 1)


def _replica(ccs, work, pull_force):
    fr = _stretched_ethane_frames(ccs)
    fr.extras = {"work": np.asarray(work, float), "spring_distance": np.linspace(6.5, 7.1, len(ccs)),
                 "pull_force": np.asarray(pull_force, float)}
    fr.attrs = {"stop_reason": "completed"}
    return fr


def test_read_replica_reads_the_barrier_before_the_break_and_reports_what_follows():
    # the spring's work keeps rising after the break (fragments that still attract): max W of
    # the whole pull (4.0) is not the barrier (3.0, the last frame before the break)
    ccs = [1.53, 1.8, 2.1, 2.5, 3.2, 3.6, 4.0]
    rep = read_replica(_replica(ccs, [0, 1, 2, 3, 3.1, 3.6, 4.0], [-1, -2, -3, -2, -0.5, -0.6, -0.7]),
                       name="replica_00")
    assert rep["broke"] and rep["break_frame"] == 4 and rep["broken_label"] == "C-C 0-1"
    assert rep["ea"] == 3.0 and rep["ea_distance"] == pytest.approx(6.8)
    assert rep["break_distance"] == pytest.approx(6.9)
    assert rep["post_break_work"] == pytest.approx(0.9) and rep["post_break_force"] == pytest.approx(0.6)
    # nothing broke: no barrier, never the last frame's work
    flat = read_replica(_replica(ccs[:4], [0, 1, 2, 3], [-1, -1, -1, -1]), name="replica_01")
    assert not flat["broke"] and math.isnan(flat["ea"]) and math.isnan(flat["post_break_work"])
    rec = barrier_record([rep, flat])
    assert rec["n_replicas"] == 1 and rec["ea_mean"] == 3.0 and math.isnan(rec["ea_stderr"])
    assert rec["unbroken"] == 1 and rec["unbroken_replicas"] == ["replica_01"]
    assert rec["per_bond"] == {"C-C 0-1": {"ea_mean": 3.0, "ea_stderr": rec["ea_stderr"], "n": 1}}
    assert rec["post_break_work_mean"] == pytest.approx(0.9)


def test_an_iteration_without_any_barrier_has_no_finite_error():
    ref = barrier_record([{"replica": f"r{k}", "n_frames": 5, "broke": True, "ea": e, "ea_distance": 8.0,
                           "break_distance": 8.5, "broken_label": "C-C 2-3", "post_break_work": 0.0,
                           "post_break_force": 0.0} for k, e in enumerate([7.5, 7.7])])
    nnp = barrier_record([{"replica": "r0", "n_frames": 5, "broke": False, "ea": math.nan}])
    d = delta_record(nnp, ref)
    assert math.isnan(d["delta_ea"]) and math.isnan(d["delta_ea_stderr_kcal"]) and not d["delta_stderr_defined"]
    assert not stop_rule_met([{**d, "cogef_abs_delta_e_max_kcal": 0.2}],
                             {"enabled": True, "observable": "both", "target_kcal": 1.0,
                              "max_stderr_kcal": 0.5, "cogef_target_kcal": 1.0, "consecutive": 1})


STOP = {"enabled": True, "target_kcal": 1.0, "max_stderr_kcal": 0.5, "cogef_target_kcal": 1.0, "consecutive": 1}


def _ev(smd, se, cogef):
    return {"abs_delta_ea_kcal": smd, "delta_ea_stderr_kcal": se, "cogef_abs_delta_e_max_kcal": cogef}


@pytest.mark.parametrize("observable, history, met", [
    ("cogef", [_ev(5.0, 2.0, 3.0), _ev(4.0, 2.0, 0.6)], True),          # COGEF alone: SMD noise ignored
    ("cogef", [_ev(0.2, 0.1, 1.2)], False),
    ("cogef", [_ev(0.2, 0.1, math.nan)], False),                         # a profile that never broke
    ("smd", [_ev(0.8, 0.4, 9.0)], True),
    ("smd", [_ev(0.8, 0.6, 0.1)], False),                                # error too large to tell
    ("smd", [_ev(1.2, 0.3, 0.1)], False),
    ("both", [_ev(0.8, 0.4, 0.9)], True),
    ("both", [_ev(0.8, 0.4, 1.1)], False),
    ("both", [_ev(1.1, 0.4, 0.9)], False),
])
def test_stop_rule_on_constructed_histories(observable, history, met):
    assert stop_rule_met(history, {**STOP, "observable": observable}) is met
    assert stop_rule_met(history, {**STOP, "observable": observable, "enabled": False}) is False


def test_stop_rule_needs_consecutive_iterations():
    good, bad = _ev(0.5, 0.3, 0.5), _ev(3.0, 0.3, 3.0)
    rule = {**STOP, "observable": "both", "consecutive": 2}
    assert not stop_rule_met([good], rule)
    assert not stop_rule_met([good, bad, good], rule)
    assert stop_rule_met([bad, good, good], rule)
    with pytest.raises(ValueError, match="observable"):
        stop_rule_met([good], {**STOP, "observable": "work"})


def test_committee_cogef_reports_every_member_and_the_stop_rule_needs_them_all():
    from rarelearn.learning.evaluation import committee_cogef
    from rarelearn.units import KCAL_MOL_PER_EV

    ref = {"broke": True, "e_max": 7.66, "break_extension": 2.47}
    mem = [{"member": 0, "broke": True, "e_max": 7.66 + 0.5 / KCAL_MOL_PER_EV, "break_extension": 2.45,
            "broken_label": "C-C 2-3"},
           {"member": 1, "broke": True, "e_max": 7.66 - 0.8 / KCAL_MOL_PER_EV, "break_extension": 2.40,
            "broken_label": "C-C 2-3"},
           {"member": 2, "broke": False, "e_max": 9.9, "break_extension": None, "broken_label": None}]
    c = committee_cogef(mem, ref)
    assert [r["member"] for r in c["cogef_members"]] == [0, 1, 2]
    assert c["cogef_members"][0]["delta_e_max_kcal"] == pytest.approx(0.5)
    assert c["cogef_members"][1]["delta_e_max_kcal"] == pytest.approx(-0.8)
    assert math.isnan(c["cogef_members"][2]["delta_e_max_kcal"]) and not c["cogef_members"][2]["broke"]
    assert c["cogef_members_n"] == 3 and c["cogef_members_broke"] == 2
    assert math.isnan(c["cogef_members_worst_abs_delta_kcal"])        # member 2 never broke: unknown
    assert c["cogef_members_e_max_spread_kcal"] == pytest.approx(1.3)
    two = committee_cogef(mem[:2], ref)
    assert two["cogef_members_worst_abs_delta_kcal"] == pytest.approx(0.8)
    # the best member alone within target is not enough when another member is not
    rule = {**STOP, "observable": "cogef"}
    best_only = _ev(5.0, 2.0, 0.5)
    assert stop_rule_met([best_only], rule)                              # profiles of the best only
    assert not stop_rule_met([{**best_only, **c}], rule)                 # a member that never broke
    assert stop_rule_met([{**best_only, **two}], rule)                   # worst 0.8 < 1
    assert not stop_rule_met([{**best_only, **two}], {**rule, "cogef_target_kcal": 0.7})
