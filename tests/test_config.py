"""Config validation: defaults, and one clear line naming the culprit for bad input."""
import pytest
from ase.build import molecule
from ase.io import write

from rarelearn.config import ConfigError, DEFAULT_SCHEMA, load_yaml, validate_config


def test_defaults_fill_every_section():
    cfg = validate_config({})
    assert cfg["molecule"]["alkane"] == 6
    assert cfg["labeller"]["name"] == "gfn2-xtb"
    assert cfg["smd"]["pull_steps"] == 6500 and cfg["smd"]["spring_k"] == 10.0
    assert cfg["selection"]["n_sigma"] == 3.0 and cfg["selection"]["augment_copies"] == 2
    assert cfg["training"]["force_weight"] == 0.1 and cfg["training"]["batch_size"] == 64


def test_user_values_win_over_defaults():
    cfg = validate_config({"training": {"epochs": 7}, "model": {"members": 5}})
    assert cfg["training"]["epochs"] == 7 and cfg["training"]["batch_size"] == 64
    assert cfg["model"]["members"] == 5


def test_shipped_configs_are_valid():
    root = DEFAULT_SCHEMA.parents[2]
    for name in ("config/config.yaml", "config/paper.yaml", "tests/configs/tiny.yaml"):
        validate_config(load_yaml(root / name))


@pytest.mark.parametrize("cfg, culprit", [
    ({"trainig": {}}, "trainig"),
    ({"training": {"epoch": 3}}, "training.epoch"),
    ({"training": {"epochs": "many"}}, "training.epochs"),
    ({"training": {"epochs": 0}}, "training.epochs"),
    ({"model": {"members": -3}}, "model.members"),
    ({"model": {"members": 1}}, "model.members"),
    ({"model": {"family": "mace"}}, "model.family"),
    ({"selection": {"n_sigma": 0}}, "selection.n_sigma"),
    ({"selection": {"n_sigma": -1.0}}, "selection.n_sigma"),
    ({"labeller": {"name": "dft-magic"}}, "labeller.name"),
    ({"reference": {"replicas": 0}}, "reference.replicas"),
    ({"smd": {"timestep_fs": -0.5}}, "smd.timestep_fs"),
    ({"labelling": {"batch_size": 0}}, "labelling.batch_size"),
    ({"molecule": {"alkane": 40}}, "molecule.alkane"),
    ({"molecule": {"elements": ["H", "C", "Xe"]}}, "molecule.elements"),
    ({"training": {"split": "stratified"}}, "training.split"),
    ({"campaign": {"stop": {"target_kcal": 0}}}, "campaign.stop.target_kcal"),
])
def test_bad_values_name_the_key(cfg, culprit):
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg)
    msg = str(exc.value)
    assert culprit in msg and "\n" not in msg


def test_structure_file_checks(tmp_path):
    xyz = tmp_path / "water.xyz"
    write(xyz, molecule("H2O"))
    base = {"elements": ["H", "C", "O"], "pull": [[0], [1]]}
    with pytest.raises(ConfigError, match="molecule.structure: file 'nope.xyz' not found"):
        validate_config({"molecule": {**base, "structure": "nope.xyz"}}, base_dir=tmp_path)
    bad = tmp_path / "garbage.xyz"
    bad.write_text("this is not\na structure\n")
    with pytest.raises(ConfigError, match="cannot read 'garbage.xyz'"):
        validate_config({"molecule": {**base, "structure": "garbage.xyz"}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="contains O, not in molecule.elements"):
        validate_config({"molecule": {"structure": "water.xyz", "pull": [[0], [1]]}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"molecule.pull\[1\]: atom index 7 out of range"):
        validate_config({"molecule": {**base, "structure": "water.xyz", "pull": [[0], [7]]}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="share atoms"):
        validate_config({"molecule": {**base, "structure": "water.xyz", "pull": [[0], [0]]}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="molecule.pull: required"):
        validate_config({"molecule": {"elements": ["H", "O", "C"], "structure": "water.xyz"}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="model.hidden: no layer sizes for O"):
        validate_config({"molecule": {**base, "structure": "water.xyz"}}, base_dir=tmp_path)
    ok = validate_config({"molecule": {**base, "structure": "water.xyz"},
                          "model": {"hidden": {"H": [8], "C": [8], "O": [8]}}}, base_dir=tmp_path)
    assert ok["molecule"]["pull"] == [[0], [1]]


def test_dftb_without_binary_fails_at_load(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("ASE_DFTB_COMMAND", raising=False)
    with pytest.raises(ConfigError, match="dftb"):
        validate_config({"labeller": {"name": "dftb+"}})


def test_yaml_is_read_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("training: !!python/object/apply:os.system ['echo pwned']\n")
    import yaml

    with pytest.raises(yaml.YAMLError):
        load_yaml(p)


def test_key_order_does_not_matter():
    a = validate_config({"smd": {"pull_steps": 10, "relax_steps": 5}, "model": {"members": 2}})
    b = validate_config({"model": {"members": 2}, "smd": {"relax_steps": 5, "pull_steps": 10}})
    assert repr(a) == repr(b)
