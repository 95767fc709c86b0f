"""Config validation: defaults, and one clear line naming the culprit for bad input."""
import os
import subprocess
import sys

import pytest
import yaml
from ase.build import molecule
from ase.io import write

from rarelearn.config import (ConfigError, DEFAULT_CONFIG, DEFAULT_SCHEMA, campaign_config, load_yaml,
                              merge_config, parse_assignment, validate_config)


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
    # an overlay, as the README runs it: --configfile config/config.yaml config/branch.yaml
    branch = campaign_config(load_yaml(root / "config" / "branch.yaml"))
    assert branch["sampler"]["kind"] == "smd+cogef" and branch["sampler"]["branch_steps"] == 5
    assert branch["smd"] == campaign_config()["smd"]


@pytest.mark.parametrize("arm", ["smd", "cogef", "smd+cogef", "hal", "cogef:all"])
def test_every_sampler_arm_of_the_benchmark_runs_on_the_branch_overlay(arm):
    """benchmarks/samplers.py --config config/branch.yaml: each arm's --config layer turns off
    what its kind cannot do, so the overlay's COGEF-only options do not stop the arm at load."""
    root = DEFAULT_SCHEMA.parents[2]
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        from samplers import arm_config
    finally:
        sys.path.remove(str(root / "benchmarks"))
    branch, kind = load_yaml(root / "config" / "branch.yaml"), arm.partition(":")[0]
    if kind != branch["sampler"]["kind"]:
        with pytest.raises(ConfigError):   # the overlay with only the kind changed is refused
            campaign_config(merge_config(branch, {"sampler": {"kind": kind}}))
    config = campaign_config(merge_config(branch, arm_config(arm, 3)))
    assert config["sampler"]["kind"] == kind and config["campaign"]["max_iterations"] == 3
    if kind in ("cogef", "smd+cogef"):
        assert config["sampler"]["descent_steps"] == 40 and config["sampler"]["branch_images"] == 5


@pytest.mark.parametrize("cfg, culprit", [
    ({"trainig": {}}, "trainig"),
    ({"training": {"epoch": 3}}, "training.epoch"),
    ({"training": {"epochs": "many"}}, "training.epochs"),
    ({"training": {"epochs": 0}}, "training.epochs"),
    ({"model": {"members": -3}}, "model.members"),
    ({"sampler": {"kind": "smd+cogef", "descent_beyond": 0.1}}, "sampler.descent_beyond"),
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
    ({"model": {"members": 2.5}}, "model.members"),
    ({"campaign": {"max_iterations": 1.5}}, "campaign.max_iterations"),
    ({"model": {"hidden": {"H": [16.5], "C": [8]}}}, "model.hidden.H.0"),
    ({"molecule": {"elements": ["H", "C", "H"]}}, "molecule.elements"),
    ({"labeller": {"options": {"electronic_temperature": "hot"}}}, "labeller.options.electronic_temperature"),
    ({"labeller": {"options": {"electronic_temperature": -5}}}, "labeller.options.electronic_temperature"),
    ({"labeller": {"options": {"multiplicity": 1.5}}}, "labeller.options.multiplicity"),
    ({"training": {"lr": "fast"}}, "training.lr"),
    ({"evaluation": {"mae_replicas": 5}}, "evaluation.mae_replicas"),
    ({"evaluation": {"cogef_members": "some"}}, "evaluation.cogef_members"),
    ({"sampler": {"cogef_paths": "all"}, "evaluation": {"cogef_members": "best"}}, "sampler.cogef_paths"),
    ({"sampler": {"labeller_steps": 3}}, "sampler.labeller_steps"),           # kind smd: no COGEF path selected
    ({"sampler": {"descent_steps": 40}}, "sampler.descent_steps"),            # kind smd: no COGEF path computed
    ({"sampler": {"kind": "cogef", "descent_images": 0}}, "sampler.descent_images"),
    ({"sampler": {"branch_images": 4}}, "sampler.branch_images"),             # kind smd: no COGEF path computed
    ({"sampler": {"kind": "cogef", "branch_window": 0}}, "sampler.branch_window"),
    ({"sampler": {"kind": "cogef", "branch_steps": 5}}, "sampler.branch_steps"),   # no branch images
    ({"sampler": {"kind": "cogef"}, "selection": {"fragment_frames": 8}}, "selection.fragment_frames"),
    ({"sampler": {"kind": "cogef"}, "selection": {"snap_frames": 8}}, "selection.snap_frames"),
    ({"selection": {"fragment_reach": 0}}, "selection.fragment_reach"),
    ({"selection": {"post_break_share": 1.5}}, "selection.post_break_share"),
    ({"selection": {"post_break_screening": "both"}}, "selection.post_break_screening"),
    ({"sampler": {"kind": "cogef", "labeller_steps": -1}}, "sampler.labeller_steps"),
    ({"studies": {"baselines": {"smd_replicas": 5}}}, "studies.baselines.smd_replicas"),
    ({"labelling": {"max_force": 0}}, "labelling.max_force"),
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
    ok = validate_config({"molecule": {**base, "structure": "water.xyz"},
                          "model": {"hidden": {"H": [8], "C": [8], "O": [8]}}}, base_dir=tmp_path)
    assert ok["molecule"]["pull"] == [[0], [1]] and ok["model"]["hidden"]["O"] == [8]


def test_every_element_has_default_networks(tmp_path):
    """H and C as the paper's Table 1, N and O as ANI-2x's networks; a config's model.hidden
    replaces them element by element, never leaving an element of the molecule without sizes."""
    from rarelearn.models.ani import DEFAULT_HIDDEN

    cfg = validate_config({})
    assert cfg["model"]["hidden"] == {"H": [256, 192, 160], "C": [224, 192, 160], "N": [192, 160, 128],
                                      "O": [192, 160, 128]}
    assert all(cfg["model"]["hidden"][e] == DEFAULT_HIDDEN[e] for e in "HCNO")  # the model's own defaults
    write(tmp_path / "ethanol.xyz", molecule("CH3CH2OH"))
    mol = {"structure": "ethanol.xyz", "pull": [[0], [2]], "elements": ["H", "C", "N", "O"]}
    # a hidden that names only H (the whole mapping: the schema's default does not fill in the
    # keys of a mapping given) keeps the defaults of the molecule's other elements
    cfg = validate_config({"molecule": mol, "model": {"hidden": {"H": [16, 8]}}}, base_dir=tmp_path)
    assert cfg["model"]["hidden"] == {"H": [16, 8], "C": [224, 192, 160], "N": [192, 160, 128],
                                      "O": [192, 160, 128]}


def test_dftb_without_binary_fails_at_load(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("ASE_DFTB_COMMAND", raising=False)
    with pytest.raises(ConfigError, match="dftb"):
        validate_config({"labeller": {"name": "dftb+"}})


def test_yaml_is_read_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    marker = tmp_path / "pwned"
    p.write_text(f"training: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="evil.yaml line 1 column 11: not valid YAML"):
        load_yaml(p)
    assert not marker.exists()


# ---------------------------------------------------------------- issue 18: what a new user got wrong
def test_whole_floats_are_the_integers_meant():
    """Item 1: `members: 3.0` passed the schema as an integer, then crashed in range()."""
    cfg = validate_config({"model": {"members": 3.0, "hidden": {"H": [16.0, 8], "C": [8]}},
                           "campaign": {"max_iterations": 2.0}})
    assert cfg["model"]["members"] == 3 and type(cfg["model"]["members"]) is int
    assert type(cfg["campaign"]["max_iterations"]) is int and list(range(cfg["campaign"]["max_iterations"]))
    assert [type(x) for x in cfg["model"]["hidden"]["H"]] == [int, int]
    with pytest.raises(ConfigError, match=r"^model.members: 2.5 is not a whole number; give an integer$"):
        validate_config({"model": {"members": 2.5}})


def test_duplicate_elements_fail_at_load():
    """Item 2: `elements: [H, C, H]` failed only at the first train job."""
    with pytest.raises(ConfigError, match=r"molecule.elements: \['H', 'C', 'H'\] lists H more than once"):
        validate_config({"molecule": {"elements": ["H", "C", "H"]}})


def test_labeller_options_are_checked_by_name():
    """Item 3: `electronic_temperature: hot` gave 'could not convert string to float'."""
    with pytest.raises(ConfigError) as exc:
        validate_config({"labeller": {"options": {"electronic_temperature": "hot"}}})
    msg = str(exc.value)
    assert msg.startswith("labeller.options.electronic_temperature: 'hot' is not a number")
    assert "could not convert" not in msg and "e.g. 300.0" in msg
    ok = validate_config({"labeller": {"options": {"electronic_temperature": "1e3", "max_iterations": 100.0}}})
    assert ok["labeller"]["options"]["electronic_temperature"] == "1e3"  # read as 1000 K by the labeller
    from rarelearn.chem.labellers import make_labeller

    lab = make_labeller("gfn2-xtb", ok["labeller"]["options"])
    assert lab.options["electronic_temperature"] == 1000.0 and lab.options["max_iterations"] == 100


def test_yaml_1_1_exponents_and_config_strings_are_numbers(tmp_path):
    """Item 4: YAML 1.1 reads `lr: 1e-3` as a string; --config hands every value over as one."""
    p = tmp_path / "lr.yaml"
    p.write_text("training:\n  lr: 1e-3\n  epochs: '5'\n  warm_start: 'false'\n  lr_patience: 'null'\n")
    raw = load_yaml(p)
    assert raw["training"]["lr"] == "1e-3"  # what PyYAML (and Snakemake) read
    cfg = validate_config(raw)
    assert cfg["training"]["lr"] == 0.001 and type(cfg["training"]["lr"]) is float
    assert cfg["training"]["epochs"] == 5 and cfg["training"]["warm_start"] is False
    assert cfg["training"]["lr_patience"] is None
    with pytest.raises(ConfigError, match=r"training.lr: 'fast' has the wrong type.*1.0e-3"):
        validate_config({"training": {"lr": "fast"}})


def test_replica_counts_fit_the_reference():
    """Item 5: evaluation.mae_replicas > reference.replicas was silently accepted."""
    with pytest.raises(ConfigError, match=r"^evaluation.mae_replicas: 3 is more than reference.replicas \(2\)"):
        validate_config({"reference": {"replicas": 2}, "evaluation": {"mae_replicas": 3}})
    assert validate_config({"reference": {"replicas": 3}, "evaluation": {"mae_replicas": 3}})
    # an adaptive reference's cap holds its first round; without a target the cap is not read
    with pytest.raises(ConfigError, match=r"^reference.max_replicas: 2 is less than reference.replicas \(4\)"):
        validate_config({"reference": {"replicas": 4, "target_stderr_kcal": 1.0, "max_replicas": 2}})
    assert validate_config({"reference": {"replicas": 4, "max_replicas": 2}})["reference"]["target_stderr_kcal"] is None
    with pytest.raises(ConfigError, match=r"reference.max_replicas"):
        validate_config({"reference": {"target_stderr_kcal": 1.0, "max_replicas": 101}})
    with pytest.raises(ConfigError, match=r"reference.target_stderr_kcal"):
        validate_config({"reference": {"target_stderr_kcal": 0}})
    # evaluation.close_replicas: more pulls than every iteration runs, at most 100
    with pytest.raises(ConfigError, match=r"^evaluation.close_replicas: 4 is not more than reference.replicas \(4\)"):
        validate_config({"evaluation": {"close_replicas": 4}})
    with pytest.raises(ConfigError, match=r"evaluation.close_replicas"):
        validate_config({"evaluation": {"close_replicas": 101}})
    with pytest.raises(ConfigError, match=r"evaluation.close_kcal"):
        validate_config({"evaluation": {"close_replicas": 8, "close_kcal": 0}})
    ok = validate_config({"evaluation": {"close_replicas": 32}})["evaluation"]
    assert ok["close_replicas"] == 32 and ok["close_kcal"] == 3.0
    assert validate_config({})["evaluation"]["close_replicas"] is None


def test_yaml_errors_and_missing_files_name_the_file_and_line(tmp_path):
    """Item 6 (what rarelearn reads itself: config/config.yaml, the check and validate commands)."""
    p = tmp_path / "broken.yaml"
    p.write_text("training:\n  epochs: 5\n lr: 0.1\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p} line 3 column 2: not valid YAML") and "\n" not in msg
    with pytest.raises(ConfigError, match="config file nope.yaml not found"):
        load_yaml("nope.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text("- molecule\n- training\n")
    with pytest.raises(ConfigError, match="holds a list, not a mapping"):
        load_yaml(lst)


def _validate_cli(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "rarelearn.config", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_validate_command_layers_like_the_workflow(tmp_path):
    """`python -m rarelearn.config`: file and line for a YAML error, dotted --config keys."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("training: {lr: 1e-3\n")
    res = _validate_cli("broken.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert res.stderr.startswith("config error: broken.yaml line 2 column 1: not valid YAML")
    mine = tmp_path / "mine.yaml"
    mine.write_text("molecule:\n  alkane: 4\n")
    res = _validate_cli("mine.yaml", "--config", "training.epochs=5", "--show", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    shown = yaml.safe_load(res.stdout)
    assert shown["training"]["epochs"] == 5 and shown["molecule"]["alkane"] == 4
    assert shown["campaign"]["max_iterations"] == 3  # the default campaign's, from config/config.yaml
    assert "config ok: C4H10" in res.stderr
    assert parse_assignment("training={epochs: 5}") == {"training": {"epochs": 5}}


def test_one_source_of_defaults():
    """Item 7: the schema's defaults are the default campaign, and config/config.yaml says the same."""
    assert repr(validate_config(load_yaml(DEFAULT_CONFIG))) == repr(validate_config({}))
    only_molecule = {"molecule": {"alkane": 4}}
    for cfg in (campaign_config(only_molecule), validate_config(only_molecule)):
        assert cfg["campaign"]["max_iterations"] == 3 and cfg["training"]["epochs"] == 50
        assert cfg["training"]["warm_start"] is True and cfg["training"]["split"] == "inherited"
        assert cfg["molecule"]["alkane"] == 4


def test_config_files_layer_as_snakemake_layers_them():
    """Item 7: merge_config is Snakemake's update_config (mappings merged, the rest replaced)."""
    from snakemake.utils import update_config

    base = load_yaml(DEFAULT_CONFIG)
    for over in ({"molecule": {"alkane": 4}}, {"training": {"epochs": 5}, "model": {"hidden": {"H": [8]}}},
                 {"molecule": {"elements": ["H", "C", "O"]}, "selection": {"max_frames": None}}):
        expected = yaml.safe_load(yaml.safe_dump(base))
        update_config(expected, over)
        assert merge_config(base, over) == expected
    merged = merge_config(base, {"training": {"epochs": 5}})
    assert merged["training"]["epochs"] == 5 and merged["training"]["warm_start"] is True
    assert base["training"]["epochs"] == 50  # the base is not changed


def test_relative_structure_paths_are_read_from_the_working_directory(tmp_path, monkeypatch):
    """Item 8: paths in a config are relative to where snakemake runs."""
    write(tmp_path / "ethane.xyz", molecule("C2H6"))
    mol = {"structure": "ethane.xyz", "pull": [[0], [1]]}
    monkeypatch.chdir(tmp_path)
    assert validate_config({"molecule": mol})["molecule"]["structure"] == "ethane.xyz"
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(ConfigError, match="a relative path is read from the working directory"):
        validate_config({"molecule": mol})


def test_key_order_does_not_matter():
    a = validate_config({"smd": {"pull_steps": 10, "relax_steps": 5}, "model": {"members": 2}})
    b = validate_config({"model": {"members": 2}, "smd": {"relax_steps": 5, "pull_steps": 10}})
    assert repr(a) == repr(b)


def test_start_from_needs_an_iteration_folder_with_every_member(tmp_path):
    """training.start_from: a folder with best.json and each member's .pt and .json, read from
    the working directory; a missing one, or warm starts off, fails at load naming the key."""
    with pytest.raises(ConfigError, match=r"^training.start_from: folder 'hex/iter_002' not found"):
        validate_config({"training": {"start_from": "hex/iter_002"}}, base_dir=tmp_path)
    start = tmp_path / "hex" / "iter_002"
    (start / "models").mkdir(parents=True)
    (start / "best.json").write_text("{}")
    for k in (0, 1):
        for ext in ("pt", "json"):
            (start / "models" / f"member_{k}.{ext}").write_text("")
    with pytest.raises(ConfigError, match=r"^training.start_from: 'hex/iter_002' has no models/member_2.pt, "
                                          r"models/member_2.json; .* at least model.members \(3\)"):
        validate_config({"training": {"start_from": "hex/iter_002"}}, base_dir=tmp_path)
    ok = validate_config({"training": {"start_from": "hex/iter_002"}, "model": {"members": 2}}, base_dir=tmp_path)
    assert ok["training"]["start_from"] == "hex/iter_002"
    with pytest.raises(ConfigError, match=r"^training.start_from: .* training.warm_start false"):
        validate_config({"training": {"start_from": "hex/iter_002", "warm_start": False}, "model": {"members": 2}},
                        base_dir=tmp_path)
    assert validate_config({})["training"]["start_from"] is None
