"""The molecules of a campaign (issue 20): a family config (`molecules:`), checked at load,
and what the workflow reads of it (rarelearn.campaign_molecules)."""
from __future__ import annotations

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
])
def test_a_wrong_family_fails_at_load_naming_the_entry(molecules, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        _cfg(molecules=molecules)
    assert message in str(err.value)


def test_a_family_needs_ani_members():
    with pytest.raises(ConfigError, match="model.family: schnet trains on one molecule"):
        _cfg(molecules=[{"alkane": 4}, {"alkane": 5}], model={"family": "schnet"})
