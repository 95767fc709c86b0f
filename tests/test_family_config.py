"""The molecules of a campaign (issue 20): a family config (`molecules:`), checked at load,
and what the workflow reads of it (rarelearn.campaign_molecules)."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule
from ase.io import write

from rarelearn.campaign_molecules import campaign_molecules, label_budget, model_elements
from rarelearn.config import ConfigError, campaign_config


def _cfg(**over):
    return campaign_config(over, check_labeller=False)


def test_one_molecule_keeps_the_paths_and_the_section_it_always_had():
    cfg = _cfg()
    (m,) = campaign_molecules(cfg)
    assert m["dir"] == "" and m["name"] == "C6" and m["spec"] == cfg["molecule"]
    assert m["md_frames"] == cfg["reference"]["md_frames"] and m["weight"] == 1.0
    # a list of one is the same campaign, in the same folders
    (one,) = campaign_molecules(_cfg(molecules=[{"alkane": 6}]))
    assert one["dir"] == "" and one["spec"] == cfg["molecule"]
    assert label_budget(50, [m]) == {"C6": 50}


def test_a_family_each_molecule_in_its_folder_laid_on_the_molecule_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write("ethanol.xyz", molecule("CH3CH2OH"))
    cfg = _cfg(molecule={"elements": ["H", "C"], "relax": False},
               molecules=[{"alkane": 4}, {"alkane": 8, "weight": 2, "md_frames": 0, "name": "octane"},
                          {"structure": "ethanol.xyz", "pull": [[0], [2]], "elements": ["H", "C", "O"]},
                          {"alkane": 11, "weight": 0}])
    mols = campaign_molecules(cfg)
    assert [m["name"] for m in mols] == ["C4", "octane", "ethanol", "C11"]
    assert [m["dir"] for m in mols] == ["/molecules/C4", "/molecules/octane", "/molecules/ethanol", "/molecules/C11"]
    assert mols[0]["spec"] == {"alkane": 4, "structure": None, "pull": None, "relax": False,
                               "elements": ["H", "C"]}
    assert mols[2]["spec"]["structure"] == "ethanol.xyz" and mols[2]["spec"]["relax"] is False
    assert [m["md_frames"] for m in mols] == [2000, 0, 2000, 0]  # held out: no MD set
    assert model_elements(mols) == ["H", "C", "O"]
    # the budget: max_frames x weight / sum of weights, rounded down; none for the held-out one
    assert label_budget(50, mols) == {"C4": 12, "octane": 25, "ethanol": 12, "C11": 0}
    assert cfg["model"]["hidden"]["O"]  # the model covers every molecule's elements


@pytest.mark.parametrize("molecules, message", [
    ([{"alkane": 4}, {"alkane": 4}], "molecules[1]: name 'C4' is already molecules[0]'s"),
    ([{"alkane": 4}, {"alkane": 5, "weight": 0, "md_frames": 10}], "molecules[1].md_frames: 10, but weight 0"),
    ([{"alkane": 4, "weight": 0}, {"alkane": 5, "weight": 0}], "molecules: every weight is 0"),
    ([{"alkane": 4, "md_frames": 0}, {"alkane": 5, "md_frames": 0}], "molecules: no molecule has an MD set"),
    ([{"alkane": 4}, {"structure": "missing.xyz", "pull": [[0], [1]]}], "molecules[1].structure: file 'missing.xyz'"),
    ([{"alkane": 4}, {"alkane": 5, "colour": "red"}], "unknown key 'molecules.1.colour'"),
    ([{"alkane": 4}, {"alkane": 5, "name": "a/b"}], "molecules.1.name"),
    ([{"alkane": 4}, {"alkane": 5, "weight": -1}], "molecules.1.weight: -1 is out of range"),
    ([{"alkane": 4}, {"alkane": 5, "data": "c5.h5"}], "molecules[1].data: file 'c5.h5' not found"),
    ([{"alkane": 4}, {"alkane": 5, "weight": 0, "data": "c5.h5"}], "molecules[1].data: 'c5.h5', but weight 0"),
])
def test_a_wrong_family_fails_at_load_naming_the_entry(molecules, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        _cfg(molecules=molecules)
    assert message in str(err.value)


def test_a_family_needs_ani_members():
    with pytest.raises(ConfigError, match="model.family: schnet trains on one molecule"):
        _cfg(molecules=[{"alkane": 4}, {"alkane": 5}], model={"family": "schnet"})


def test_the_budget_split_by_cogef_error_gives_the_worst_molecules_the_most_labels():
    from rarelearn.campaign_molecules import error_budget

    w = {"C3": 1.0, "C4": 1.0, "C6": 2.0}
    # need = weight x |error|: 10, 30, 2 x 20 = 40 of 80 -> 60 x 1/8, 3/8, 4/8
    assert error_budget(60, w, {"C3": 10.0, "C4": -30.0, "C6": 20.0}, 1.0) == {"C3": 7, "C4": 22, "C6": 30}
    # a molecule within the tolerance keeps a share as small as the tolerance, at least 1 frame
    got = error_budget(60, w, {"C3": 0.2, "C4": 40.0, "C6": 40.0}, 1.0)
    assert got["C3"] == 1 and got["C4"] == int(60 * 40 / 121) and got["C6"] == int(60 * 80 / 121)
    assert sum(got.values()) <= 60
    # an unknown error counts as the largest known one; none known: the weights decide
    assert error_budget(40, w, {"C3": 5.0, "C4": float("nan"), "C6": 10.0}, 1.0) == {"C3": 5, "C4": 11, "C6": 22}
    assert error_budget(40, w, {}, 1.0) == {"C3": 10, "C4": 10, "C6": 20}


def test_a_select_job_reads_its_share_off_the_iterations_cogef_profiles(tmp_path):
    from rarelearn.jsonio import write_json
    from rarelearn.steps.select import family_budget
    from rarelearn.units import KCAL_MOL_PER_EV

    files = {"cogef": {}, "reference_cogef": {}}
    for name, e_nnp, e_ref in (("C2", 8.0, 7.5), ("C3", 7.0, 7.9)):
        for key, e in (("cogef", e_nnp), ("reference_cogef", e_ref)):
            files[key][name] = str(tmp_path / f"{name}_{key}.json")
            write_json(files[key][name], {"e_max": e, "broke": key == "cogef" or name == "C2"})
    rec = family_budget({"molecule": "C3", "max_frames": 10, "floor_kcal": 1.0, "weights": {"C2": 1, "C3": 1},
                         **files})
    assert rec["errors_kcal"] == pytest.approx({"C2": 0.5 * KCAL_MOL_PER_EV, "C3": 0.9 * KCAL_MOL_PER_EV})
    assert rec["frames"] == {"C2": 3, "C3": 6} and rec["max_frames"] == 6 and rec["molecule"] == "C3"


@pytest.mark.parametrize("over, message", [
    ({"selection": {"budget_split": "cogef_error", "max_frames": None}}, "max_frames, which is null"),
    ({"selection": {"budget_split": "cogef_error"}, "sampler": {"kind": "hal"}}, "sampler hal hands over"),
    ({"selection": {"budget_split": "errors"}}, "selection.budget_split"),
])
def test_a_budget_split_that_cannot_work_fails_at_load(over, message):
    with pytest.raises(ConfigError) as err:
        _cfg(molecules=[{"alkane": 4}, {"alkane": 5}], **over)
    assert message in str(err.value)


def test_no_cap_leaves_every_trained_molecule_uncapped():
    mols = campaign_molecules(_cfg(molecules=[{"alkane": 4}, {"alkane": 5, "weight": 0}]))
    assert label_budget(None, mols) == {"C4": None, "C5": 0}


def test_a_long_alkane_in_a_family_is_pulled_and_scanned_further():
    cfg = _cfg(molecules=[{"alkane": 4}, {"alkane": 8}, {"alkane": 11, "weight": 0},
                          {"alkane": 9, "weight": 0, "pull_steps": 7000, "cogef_max_extension": 4.5}])
    lengths = {m["name"]: (m["pull_steps"], m["cogef_max_extension"]) for m in campaign_molecules(cfg)}
    # at least 0.65 Å a C–C bond at 1 Å/ps and 0.5 fs (hexane's 3.25 Å); COGEF scaled by bonds / 5
    assert lengths == {"C4": (6500, 4.0), "C8": (9100, 5.6), "C11": (13000, 8.0), "C9": (7000, 4.5)}
    # one molecule: the sections' own lengths, whatever its length
    (m,) = campaign_molecules(_cfg(molecule={"alkane": 11}))
    assert (m["pull_steps"], m["cogef_max_extension"]) == (6500, 4.0)
    with pytest.raises(ConfigError, match="pull_steps"):
        _cfg(molecules=[{"alkane": 4}, {"alkane": 5, "pull_steps": 0}])


def _labelled(n_frames, numbers, energy=0.0):
    from rarelearn.dataset import Frames

    rng = np.random.default_rng(int(energy * 10) + n_frames)
    pos = rng.normal(size=(n_frames, len(numbers), 3))
    return Frames(numbers=np.asarray(numbers), positions=pos, energy=energy + rng.normal(size=n_frames),
                  forces=np.zeros_like(pos), source=np.array(["md"] * n_frames))


def test_a_molecule_starts_from_a_data_file_of_its_own_atoms(tmp_path, monkeypatch):
    from rarelearn.dataset import read_frames, write_frames
    from rarelearn.steps.train import initial_dataset, start_data

    monkeypatch.chdir(tmp_path)
    ethane = molecule("C2H6")
    write_frames("c2.h5", _labelled(5, ethane.numbers, 1.0))
    # the file may stand in for the MD set: iteration 0 has something to train on
    mols = campaign_molecules(_cfg(molecules=[{"alkane": 2, "md_frames": 0, "data": "c2.h5"},
                                               {"alkane": 3, "md_frames": 0}]))
    assert [m["data"] for m in mols] == ["c2.h5", None]
    # its frames join the MD set's (duplicates once); another molecule's atoms are refused
    write_frames("md.h5", _labelled(3, ethane.numbers, 2.0))
    initial_dataset("md.h5", "start.h5", data="c2.h5")
    assert len(read_frames("start.h5")) == 8
    initial_dataset("md.h5", "again.h5", data="start.h5")
    assert len(read_frames("again.h5")) == 8
    write_frames("c3.h5", _labelled(2, molecule("C3H8").numbers))
    with pytest.raises(ValueError, match="data file c3.h5: its atoms"):
        start_data("c3.h5", ethane.numbers)
