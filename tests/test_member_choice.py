"""model.best_member: cogef_median, the member at the committee's median COGEF maximum."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import jobs_run, snakemake, write_config
from rarelearn.config import ConfigError, validate_config
from rarelearn.jsonio import write_json
from rarelearn.learning.errors import median_cogef_member
from rarelearn.steps.train import median_cogef_step


def test_median_member_is_the_middle_maximum_not_the_lowest_force_error():
    # member 0 has the lowest force error but the committee's highest barrier
    k, dist = median_cogef_member([[7.9, 7.6, 7.7]], [[True, True, True]], [0.01, 0.02, 0.03])
    assert k == 2 and dist == [1.0, 1.0, 0.0]


def test_a_member_that_does_not_break_ranks_above_those_that_do():
    # member 1's scan held the bond: its maximum is unbounded, so the median is member 2's 7.9
    k, _ = median_cogef_member([[7.5, 6.0, 7.9]], [[True, False, True]], [0.03, 0.01, 0.02])
    assert k == 2
    # two unbroken share the top ranks; the median is one of them, the lower force error wins
    k, dist = median_cogef_member([[7.5, 6.0, 7.9]], [[True, False, False]], [0.01, 0.03, 0.02])
    assert dist == [1.0, 0.5, 0.5] and k == 2


def test_a_family_takes_the_member_most_central_over_its_molecules():
    e = [[1.0, 2.0, 3.0, 4.0, 5.0],    # median member 2
         [5.0, 1.0, 3.0, 4.0, 2.0],    # median member 2
         [3.0, 1.0, 2.0, 5.0, 4.0]]    # median member 0
    k, dist = median_cogef_member(e, np.ones((3, 5), bool), [0.0] * 5)
    assert k == 2 and dist[2] == 1.0
    with pytest.raises(ValueError, match="expected .molecules, 3 members"):
        median_cogef_member(e, np.ones((3, 5), bool), [0.0] * 3)


def test_step_writes_the_choice_beside_the_validation_choice(tmp_path):
    write_json(tmp_path / "validation.json", {"best_member": 0, "force_mae": [0.01, 0.02, 0.03]})
    paths = []
    for k, (e, b) in enumerate([(8.1, True), (7.7, True), (7.8, True)]):
        paths.append(tmp_path / f"member_{k}.json")
        write_json(paths[-1], {"e_max": e, "broke": b})
    rec = median_cogef_step(tmp_path / "validation.json", {"C6H14": paths}, tmp_path / "best.json")
    saved = json.loads((tmp_path / "best.json").read_text())
    assert saved == rec
    assert rec["best_member"] == 2 and rec["validation_best"] == 0 and rec["rule"] == "cogef_median"
    assert rec["cogef_e_max"] == {"C6H14": [8.1, 7.7, 7.8]}
    with pytest.raises(ValueError, match="2 member COGEF profiles for 3 members"):
        median_cogef_step(tmp_path / "validation.json", {"C6H14": paths[:2]}, tmp_path / "b2.json")


@pytest.mark.parametrize("cfg", [
    {"model": {"best_member": "cogef_median", "members": 3}, "evaluation": {"cogef_members": "best"}},
    {"model": {"best_member": "cogef_median", "members": 2}},
])
def test_config_refuses_a_median_without_every_members_scan(cfg):
    with pytest.raises(ConfigError, match="model.best_member: cogef_median"):
        validate_config(cfg, check_labeller=False)


@pytest.mark.slow
def test_campaign_chooses_the_median_member_before_it_pulls(campaign, tmp_path):
    """The tiny campaign's iteration 0 again with 3 members and the median choice: the
    members' COGEF scans come first, best.json is the median member's, and the pulls, the
    COGEF path and the evaluation are that member's."""
    wd = tmp_path / "c"
    shutil.copytree(campaign, wd, symlinks=True)
    cfg = write_config(tmp_path / "m.yaml", **{"campaign.max_iterations": 1, "model.members": 3,
                                               "model.best_member": "cogef_median"})
    res = snakemake(wd, configfile=cfg)
    assert res.returncode == 0, res.stderr[-4000:]
    counts = jobs_run(res.stdout + res.stderr)
    assert counts["median_member"] == 1 and counts["member_cogef"] == 3 and counts["train"] == 3
    it = wd / "results" / "iter_000"
    best = json.loads((it / "best.json").read_text())
    val = json.loads((it / "validation.json").read_text())
    assert best["rule"] == "cogef_median" and best["validation_best"] == val["best_member"]
    profiles = [json.loads((it / "cogef" / f"member_{k}.json").read_text()) for k in range(3)]
    e = [p["e_max"] if p["broke"] else np.inf for p in profiles]
    assert sorted(e)[1] == e[best["best_member"]]
    # the iteration's own COGEF profile and its evaluation are the chosen member's
    assert json.loads((it / "cogef.json").read_text())["e_max"] == profiles[best["best_member"]]["e_max"]
    assert json.loads((it / "evaluation.json").read_text())["best_member"] == best["best_member"]
    # the log of the pulls started after the choice
    assert (wd / "logs" / "iter_000" / "median_member.log").stat().st_mtime <= \
        min(p.stat().st_mtime for p in (it / "smd").glob("replica_*.h5"))
