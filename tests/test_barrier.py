import json
import math

import numpy as np
import pytest
from ase.build import molecule

from rarelearn.chem.barrier import (ReplicaSummary, RoundsToGo, activation_energy, delta, read_replica,
                                    rounds_to_go, summarize)
from rarelearn.chem.breaks import find_break
from rarelearn.chem.barrier import barrier_record, delta_record
from rarelearn.learning.evaluation import stop_rule_met
from rarelearn.dataset import Frames, write_frames
from rarelearn.steps.reference import reference_barrier, reference_round
from rarelearn.units import KCAL_MOL_PER_EV


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
    # the bond is a bond (<= 1.98 Å) last at frame 1 (1.8 Å): E_a = W there (1.0) + 2.0 during the snap
    assert rep["snap_frame"] == 1 and rep["work_to_snap"] == 1.0 and rep["peak_force"] == 3.0
    assert rep["snap_distance"] == pytest.approx(6.6)
    assert rec["work_to_snap_mean"] == 1.0 and rec["work_in_snap_mean"] == pytest.approx(2.0)
    assert math.isnan(flat["work_to_snap"]) and flat["snap_frame"] is None


def test_snap_start_is_the_last_frame_the_breaking_bond_is_a_bond():
    from rarelearn.chem.breaks import find_break, snap_start
    # the bond goes past 1.98 Å, comes back, and then runs to the break: the snap starts at its last return
    ccs = [1.53, 2.0, 1.95, 2.1, 2.6, 3.2]
    fr = _stretched_ethane_frames(ccs)
    brk = find_break(fr.numbers, fr.positions)
    assert brk.index == 5 and snap_start(fr.numbers, fr.positions, brk) == 2
    never = _stretched_ethane_frames([2.0, 2.5, 3.1])
    assert snap_start(never.numbers, never.positions, find_break(never.numbers, never.positions, fr.positions[0])) == 0
    intact = _stretched_ethane_frames([1.53, 1.9])
    assert snap_start(intact.numbers, intact.positions, find_break(intact.numbers, intact.positions)) is None


def test_delta_splits_into_the_stretch_and_the_snap():
    ccs = [1.53, 1.8, 2.1, 2.5, 3.2]
    ref = barrier_record([read_replica(_replica(ccs, [0, 1, 2, 3, 3.1], [-1, -2, -3, -2, -0.5]))])
    # a potential whose chain stretched alike (W 1.0 at the snap's start) and snaps with 1.0 eV less work
    nnp = barrier_record([read_replica(_replica(ccs, [0, 1, 1.5, 2, 3.1], [-1, -2, -3, -2, -0.5]))])
    d = delta_record(nnp, ref)
    assert d["delta_ea_kcal"] == pytest.approx(-23.06, abs=0.01)
    assert d["work_to_snap_delta_kcal"] == pytest.approx(0.0)
    assert d["work_in_snap_delta_kcal"] == pytest.approx(-23.06, abs=0.01)
    old = {k: v for k, v in ref.items() if "snap" not in k}                 # a barrier.json from before
    assert math.isnan(delta_record(nnp, old)["work_to_snap_delta_kcal"])


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


def test_replica_plan_spends_replicas_only_where_the_cogef_profile_is_close():
    """evaluation.close_replicas: all of them only where the same bond breaks within close_kcal."""
    from rarelearn.learning.evaluation import replica_plan

    def comparison(err, same):
        return {"cogef_abs_delta_e_max_kcal": err, "cogef_same_bond": same}

    close = replica_plan(comparison(2.5, True), 4, 32, 3.0)
    assert close["replicas"] == 32 and close["close"] and close["reason"].endswith(": 32 SMD replicas")
    assert replica_plan(comparison(3.0, True), 4, 32, 3.0)["replicas"] == 32        # the bound is in
    far = replica_plan(comparison(3.5, True), 4, 32, 3.0)
    assert far["replicas"] == 4 and not far["close"] and "3.5 kcal/mol > 3" in far["reason"]
    other = replica_plan(comparison(0.2, False), 4, 32, 3.0)                        # another event
    assert other["replicas"] == 4 and "another bond" in other["reason"]
    for err in (math.nan, None):                                                     # a profile that never broke
        assert replica_plan(comparison(err, True), 4, 32, 3.0)["replicas"] == 4
    with pytest.raises(ValueError, match="more than replicas"):
        replica_plan(comparison(1.0, True), 4, 4, 3.0)


def test_replica_plan_step_reads_the_cogef_profiles(tmp_path):
    """The workflow's replica_plan job: the comparison of two profile files decides, and the
    plan is written."""
    from rarelearn.steps.evaluate import replica_plan_step

    ref = {"broke": True, "e_max": 7.66, "f_max": 4.5, "break_extension": 2.47, "broken_bond": [0, 1],
           "extension": [0.0, 1.0, 2.0, 2.47], "energy": [0.0, 1.0, 5.0, 7.66], "pull": [0, 1]}
    nnp = {**ref, "e_max": 7.66 + 2.0 / KCAL_MOL_PER_EV}
    paths = {}
    for name, rec in (("ref", ref), ("nnp", nnp)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(rec))
    plan_cfg = {"replicas": 2, "close_replicas": 6, "close_kcal": 3.0}
    plan = replica_plan_step(paths["nnp"], paths["ref"], None, plan_cfg, tmp_path / "plan.json")
    assert plan["replicas"] == 6 and plan["cogef_abs_delta_e_max_kcal"] == pytest.approx(2.0)
    assert json.loads((tmp_path / "plan.json").read_text())["replicas"] == 6
    plan = replica_plan_step(paths["nnp"], paths["ref"], None, {**plan_cfg, "close_kcal": 1.5}, tmp_path / "p2.json")
    assert plan["replicas"] == 2 and not plan["close"]


# ---------------------------------------------------------------- adaptive reference: the stopping rule
def _values_with_std(std, n, mean=7.6):
    """n values (eV) whose sample standard deviation (ddof 1) is exactly ``std``."""
    z = np.resize([-1.0, 1.0], n)
    z = (z - z.mean()) / z.std(ddof=1)
    return (mean + std * z).tolist()


KCAL = KCAL_MOL_PER_EV


def test_rounds_to_go_estimates_the_rounds_to_the_target():
    # METHOD.md: one replica scatters by 4.2 kcal/mol; 1 kcal/mol takes ceil(4.2²) = 18 replicas
    v = _values_with_std(4.2 / KCAL, 4)
    go = rounds_to_go(v, 4, 4, 1.0 / KCAL, 80)
    assert go.reason == "above_target" and go.stderr * KCAL == pytest.approx(2.1)
    assert go.replicas_needed == 18 and go.rounds == 4          # 14 more replicas, rounds of 4
    # the cap: no more than max_replicas in all, the last round cut short
    capped = rounds_to_go(v, 4, 4, 1.0 / KCAL, 10)
    assert capped.replicas_needed == 10 and capped.rounds == 2
    assert rounds_to_go(v, 4, 4, 1.0 / KCAL, 5).rounds == 1
    # at the cap, or the target met: stop
    assert rounds_to_go(v, 4, 4, 1.0 / KCAL, 4) == RoundsToGo(0, "max_replicas", go.stderr, None)
    met = rounds_to_go(v, 4, 4, 2.2 / KCAL, 80)
    assert met.rounds == 0 and met.reason == "target_met" and met.replicas_needed == 4
    assert rounds_to_go(v, 4, 4, 2.1 / KCAL + 1e-12, 4).reason == "target_met"  # met beats the cap
    # no target: a fixed count, never another round
    assert rounds_to_go(v, 4, 4, None, 80) == RoundsToGo(0, "fixed", go.stderr, None)


def test_rounds_to_go_counts_replicas_without_a_barrier():
    # half the replicas did not break: twice as many must run for the same number of barriers
    v = _values_with_std(4.2 / KCAL, 4) + [math.nan] * 4
    go = rounds_to_go(v, 8, 4, 1.0 / KCAL, 80)
    assert go.replicas_needed == 36 and go.rounds == 7
    # one barrier: no spread to go by, one more round; none at all: more of the same pull won't help
    one = rounds_to_go([7.6, math.nan], 4, 4, 1.0 / KCAL, 80)
    assert one.rounds == 1 and one.reason == "stderr_undefined" and math.isnan(one.stderr)
    none = rounds_to_go([math.nan] * 4, 4, 4, 1.0 / KCAL, 80)
    assert none.rounds == 0 and none.reason == "no_barrier"
    assert rounds_to_go([7.6], 1, 1, 1.0 / KCAL, 1).reason == "max_replicas"


def test_rounds_to_go_rejects_what_cannot_be():
    with pytest.raises(ValueError, match="per_round"):
        rounds_to_go([7.6, 7.7], 2, 0, 0.01, 10)
    with pytest.raises(ValueError, match="replicas_run"):
        rounds_to_go([7.6, 7.7, 7.8], 2, 2, 0.01, 10)
    with pytest.raises(ValueError, match="target_stderr"):
        rounds_to_go([7.6, 7.7], 2, 2, 0.0, 10)


@pytest.mark.parametrize("seed", range(5))
def test_rounds_run_as_the_workflow_runs_them_end_at_the_target_or_the_cap(seed):
    """The workflow's loop (a round of per_round replicas, then the rule) over replicas that
    scatter as hexane's do (4.2 kcal/mol, METHOD.md): it ends with the standard error at most
    the target, or at the cap, and never stops early while there is room."""
    rng = np.random.default_rng(seed)
    per_round, cap, target = 4, 40, 1.0 / KCAL
    values: list[float] = []
    while True:
        values += list(7.63 + rng.normal(0.0, 4.2 / KCAL, min(per_round, cap - len(values))))
        go = rounds_to_go(values, len(values), per_round, target, cap)
        if go.rounds == 0:
            break
        assert go.reason in ("above_target", "stderr_undefined") and len(values) < cap
    se = summarize(values).stderr
    assert (go.reason == "target_met" and se <= target) or (go.reason == "max_replicas" and len(values) == cap)
    assert len(values) % per_round == 0 or len(values) == cap


def _replica_file(path, ea, broke=True):
    ccs = [1.53, 1.8, 2.1, 2.5, 3.2, 3.6] if broke else [1.53, 1.6, 1.7, 1.8]
    work = np.linspace(0.0, ea, len(ccs))
    if broke:
        work = np.array([0.0, 0.3 * ea, 0.7 * ea, ea, ea + 0.1, ea + 0.1])
    write_frames(path, _replica(ccs, work, -np.ones(len(ccs))))
    return path


def test_reference_rounds_decide_and_the_barrier_records_the_count(tmp_path):
    """The steps of the reference_round checkpoint and reference_barrier on made-up replicas:
    the decision after a round whose standard error is above the target asks for another; the
    barrier records how many replicas ran, in how many rounds, and the standard error reached."""
    rounds = {"per_round": 2, "target_stderr_kcal": 1.0, "max_replicas": 6}
    paths = [_replica_file(tmp_path / f"replica_{k:02d}.h5", ea) for k, ea in enumerate([3.0, 3.3, 3.1, 3.2])]
    first = reference_round(paths[:2], tmp_path / "round_00.json", 0, rounds)
    assert first["more"] and first["reason"] == "above_target" and first["replicas_run"] == 2
    assert first["ea_stderr_kcal"] == pytest.approx(0.15 * KCAL)
    assert json.loads((tmp_path / "round_00.json").read_text())["more"] is True
    # a target the first round meets: no more rounds
    loose = reference_round(paths[:2], tmp_path / "loose.json", 0, {**rounds, "target_stderr_kcal": 5.0})
    assert not loose["more"] and loose["reason"] == "target_met" and loose["target_met"]
    rec = reference_barrier(paths, tmp_path / "barrier.json", rounds=rounds,
                            decisions=[tmp_path / "round_00.json"])
    assert rec["replicas_run"] == 4 and rec["n_replicas"] == 4
    assert rec["ea_stderr_kcal"] == pytest.approx(rec["ea_stderr"] * KCAL)
    assert rec["rounds"]["count"] == 2 and rec["rounds"]["per_round"] == 2 and rec["rounds"]["target_met"] is False
    assert rec["rounds"]["decisions"] == [str(tmp_path / "round_00.json")]
    # a fixed count (no rounds given): one round, no target
    fixed = reference_barrier(paths[:2], tmp_path / "fixed.json")
    assert fixed["rounds"]["count"] == 1 and fixed["rounds"]["reason"] == "fixed"
    assert fixed["rounds"]["target_met"] is None and fixed["replicas_run"] == 2
    # a replica without a barrier is run (counted) but has no E_a
    unbroken = _replica_file(tmp_path / "replica_09.h5", 1.0, broke=False)
    dec = reference_round(paths[:2] + [unbroken], tmp_path / "round_x.json", 1, rounds)
    assert dec["replicas_run"] == 3 and dec["n_replicas"] == 2
