"""A campaign of several molecules through Snakemake (issue 20), on the tiny settings:
ethane with an MD set, propane without one, butane held out (tests/configs/family.yaml).
One committee learns from both trained molecules; each molecule has its own reference
stage, pulls, selection (its share of the label budget, by its COGEF error) and
evaluation; the held-out one is evaluated every iteration and never trained on."""
from __future__ import annotations

import json
import time

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import REPO, jobs_run, snakemake
from rarelearn.campaign_molecules import error_budget
from rarelearn.dataset import read_frames
from rarelearn.units import KCAL_MOL_PER_EV

pytestmark = pytest.mark.slow

FAMILY = REPO / "tests" / "configs" / "family.yaml"
NAMES = ["C2", "C3", "C4"]


@pytest.fixture(scope="module")
def family_campaign(tmp_path_factory):
    wd = tmp_path_factory.mktemp("family")
    t0 = time.time()
    res = snakemake(wd, configfile=FAMILY)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    print(f"family campaign took {time.time() - t0:.0f} s")
    return wd


def _mol(root, iteration, name):
    return root / "results" / f"iter_{iteration:03d}" / "molecules" / name


def test_each_molecule_has_its_own_reference(family_campaign):
    ref = family_campaign / "results" / "reference" / "molecules"
    for n_carbon, name in enumerate(NAMES, start=2):
        barrier = json.loads((ref / name / "barrier.json").read_text())
        assert barrier["n_replicas"] == 2 and barrier["ea_mean"] > 0
        mol = read_frames(family_campaign / "results" / "reference" / "molecules" / name / "smd" / "replica_00.h5")
        assert (mol.numbers == 6).sum() == n_carbon
        # butane's entry gives its own pull length: the labeller pulls that far, the potential's
        # pulls are given the same protocol (one of them may stop early, at a blow-up)
        steps = 1000 if name == "C4" else 800
        assert int(mol.extras["step"][-1]) == steps
        with h5py.File(_mol(family_campaign, 1, name) / "smd" / "replica_00.h5") as f:
            assert json.loads(f.attrs["meta_protocol"])["pull_steps"] == steps
    # only ethane has an MD set; propane starts with an empty data set, butane has none
    assert read_frames(ref / "C2" / "md.h5").ok.sum() > 0
    assert not (ref / "C3" / "md.h5").exists() and not (ref / "C4" / "md.h5").exists()
    assert len(read_frames(_mol(family_campaign, 0, "C3") / "dataset.h5")) == 0
    assert not (_mol(family_campaign, 0, "C4") / "dataset.h5").exists()


def test_one_committee_learns_every_trained_molecule(family_campaign):
    root = family_campaign
    merged = {name: read_frames(_mol(root, 0, name) / "merged.h5") for name in ("C2", "C3")}
    # propane entered the data set through its selection of iteration 0
    assert len(merged["C3"]) > 0 and (merged["C3"].source != "md").all()
    sel = {name: json.loads((_mol(root, 0, name) / "selected" / "selection.json").read_text())
           for name in ("C2", "C3")}
    # the budget (max_frames 6, weights 1 and 1, budget_split cogef_error): in proportion to
    # each molecule's |ΔE_max| of the iteration's COGEF profiles against the reference's
    errors = {name: abs(json.loads((_mol(root, 0, name) / "cogef.json").read_text())["e_max"]
                        - json.loads((root / "results" / "reference" / "molecules" / name / "cogef.json")
                                     .read_text())["e_max"]) * KCAL_MOL_PER_EV for name in ("C2", "C3")}
    share = error_budget(6, {"C2": 1.0, "C3": 1.0}, errors, 1.0)
    for name, s in sel.items():
        assert s["budget"]["errors_kcal"] == pytest.approx(errors) and s["budget"]["frames"] == share
        assert 0 < s["selected"] <= share[name]
    info = json.loads((root / "results" / "iter_001" / "models" / "member_0.json").read_text())
    hashes = set(info["train_hashes"]) | set(info["val_hashes"])
    assert hashes == set(merged["C2"].hashes) | set(merged["C3"].hashes)
    # the held-out butane: no selection, nothing of it in the data
    assert not (_mol(root, 0, "C4") / "selected").exists()
    ev = json.loads((_mol(root, 1, "C4") / "evaluation.json").read_text())
    assert ev["held_out"] and ev["frames_selected"] == 0 and ev["dataset_frames"] == 0
    assert ev["unseen_frames"] > 0 and np.isfinite(ev["unseen_energy_mae"])


def test_the_summary_has_every_molecule_and_the_campaign_labels(family_campaign):
    root = family_campaign / "results"
    table = pd.read_csv(root / "summary.csv")
    assert list(table.columns[:2]) == ["molecule", "iteration"]
    assert sorted(zip(table.molecule, table.iteration)) == [(n, i) for n in NAMES for i in (0, 1)]
    for i in (0, 1):
        rows = table[table.iteration == i]
        assert (rows.campaign_labels_total == rows.labels_total.sum()).all()
    c2 = table[table.molecule == "C2"]
    assert c2.labels_total.iloc[0] == len(read_frames(root / "reference" / "molecules" / "C2" / "md.h5")) + \
        c2.frames_selected.iloc[0] + c2.frames_augmented.iloc[0]
    assert (table[table.molecule == "C4"].labels_total == 0).all()
    for name in NAMES:
        assert len(pd.read_csv(root / "summary" / "molecules" / f"{name}.csv")) == 2
        assert (root / "figures" / "molecules" / name / "barrier_error.png").stat().st_size > 0
    assert (root / "figures" / "family.png").stat().st_size > 0   # every molecule on one page


def test_one_potential_with_a_card_per_molecule(family_campaign):
    from ase.build import molecule

    from rarelearn.potential import load_potential, read_card

    pot = family_campaign / "results" / "potential"
    card = read_card(pot)
    assert [m["name"] for m in card["molecules"]] == NAMES
    assert [m["held_out"] for m in card["molecules"]] == [False, False, True]
    # each molecule's pulls as they ran (butane's entry pulls it further), the campaign's section
    assert [m["smd_protocol"]["pull_steps"] for m in card["molecules"]] == [800, 800, 1000]
    assert card["smd_protocol"]["pull_steps"] == 800
    chosen = card["iteration"]["chosen"]
    for m in card["molecules"]:
        ev = json.loads((_mol(family_campaign, chosen, m["name"]) / "evaluation.json").read_text())
        assert m["errors"]["unseen_energy_mae_eV"] == pytest.approx(ev["unseen_energy_mae"])
        assert m["molecule"]["n_atoms"] == 3 * int(m["name"][1:]) + 2
    held = card["molecules"][2]
    assert held["trained_range"]["frames"] == 0 and held["dataset"]["frames"] == 0
    # the calculator's bounds: the largest spread on any trained molecule's training set
    # (propane has none when the chosen iteration trained on no propane frame: its selections come later)
    bounds = [m["uncertainty"]["warn_energy_std_above_eV"] for m in card["molecules"][:2]]
    assert bounds[0] is not None and card["uncertainty"]["warn_energy_std_above_eV"] == max(
        b for b in bounds if b is not None)
    text = (pot / "card.md").read_text()
    assert "## C2" in text and "## C4 (held out)" in text and "held out: a test of how the potential transfers" in text
    calc = load_potential(pot)
    propane = molecule("C3H8")
    propane.calc = calc
    assert np.isfinite(propane.get_potential_energy()) and propane.get_forces().shape == (11, 3)


def test_nothing_left_to_do_and_the_studies_say_why_not(family_campaign):
    dry = snakemake(family_campaign, "-n", configfile=FAMILY)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-2000:]
    res = snakemake(family_campaign, "transfer", configfile=FAMILY)
    assert res.returncode != 0 and "give the molecules to test weight: 0" in res.stdout + res.stderr


def test_the_check_knows_every_molecules_files(family_campaign, capsys):
    from rarelearn.check import main

    args = ["--configfile", str(FAMILY), "--directory", str(family_campaign)]
    assert main(args) == 0, capsys.readouterr()
    capsys.readouterr()
    merge = _mol(family_campaign, 0, "C3") / "merge.json"
    kept = merge.read_bytes()
    merge.unlink()
    try:
        assert main(args) == 1
        out = capsys.readouterr().out
        assert "results/iter_000/molecules/C3/merge.json: missing (rule merge)" in out
        assert "--forcerun results/iter_000/molecules/C3/merge.json" in out
    finally:
        merge.write_bytes(kept)


def test_the_branch_recipe_plans_for_a_family(tmp_path):
    """config/branch.yaml on a family: every trained molecule's select job reads its own
    COGEF paths and the iteration's one committee (for the labeller's descent from the best
    member's maximum), not a committee in the molecule's folder, which there is none of."""
    import yaml

    cfg = yaml.safe_load(FAMILY.read_text())
    branch = yaml.safe_load((REPO / "config" / "branch.yaml").read_text())
    for key in ("sampler", "model", "selection", "evaluation"):
        cfg[key] = {**cfg.get(key, {}), **branch[key]}
    cfg["model"]["members"] = 3   # the median member needs three
    (tmp_path / "fb.yaml").write_text(yaml.safe_dump(cfg))
    dry = snakemake(tmp_path, "-n", "--rerun-triggers", "mtime", configfile=tmp_path / "fb.yaml")
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-3000:]
    counts = jobs_run(dry.stdout)
    # a select per trained molecule; every member's COGEF path of every molecule, held out too
    assert counts["select"] == 2 and counts["member_cogef"] == 3 * 3 and counts["median_member"] == 1


def test_a_family_starts_from_another_campaigns_data(family_campaign, tmp_path):
    """molecules[i].data: ethane's data set starts from the ethane labels of a finished
    campaign (its merged.h5) instead of an MD set; the workflow builds it from that file."""
    import yaml

    merged = _mol(family_campaign, 1, "C2") / "merged.h5"
    cfg = yaml.safe_load(FAMILY.read_text())
    cfg["molecules"] = [{"alkane": 2, "md_frames": 0, "data": str(merged)}, {"alkane": 3, "md_frames": 0}]
    (tmp_path / "start.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/iter_000/molecules/C2/dataset.h5"
    res = snakemake(tmp_path, target, configfile=tmp_path / "start.yaml")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    start, given = read_frames(tmp_path / target), read_frames(merged)
    assert set(start.hashes) == set(given.hashes[given.ok]) and len(start) == given.ok.sum() > 0
    assert not (tmp_path / "results" / "reference" / "molecules" / "C2" / "md.h5").exists()
