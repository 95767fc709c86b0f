"""`python -m rarelearn.check`: every result file opened, missing and damaged ones named with
the command that remakes them (issue 18, item 10). The repair of a real campaign is in
test_workflow.py (test_check_repairs_a_damaged_campaign)."""
import json

from ase.build import molecule

from rarelearn.check import Problem, check_results, expected_files, main, repair_command, rule_of
from rarelearn.config import validate_config
from rarelearn.dataset import Frames, write_frames


def _frames():
    atoms = molecule("C2H6")
    return Frames(numbers=atoms.numbers, positions=atoms.positions[None], source="al")


def _tree(root):
    res = root / "results"
    it0, it1 = res / "iter_000", res / "iter_001"
    (it0 / "selected").mkdir(parents=True)
    (it0 / "evaluation.json").write_text("{}")
    (it0 / "merge.json").write_text('{"added": 3,\n')  # cut off
    write_frames(it0 / "selected" / "batch_0000.h5", _frames())
    (it0 / "selected" / "selection.json").write_text("{}")
    (it0 / "best.json").write_text('{"best_member": 0}')
    (it0 / "smd").mkdir()
    (it0 / "smd" / "replica_00.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # truncated HDF5
    (it0 / ".merged.h5.abc123.tmp").write_bytes(b"partial")  # a killed write's leftover: not a result
    (it1 / "models").mkdir(parents=True)  # iteration 1 in progress: nothing missing yet
    (it1 / "models" / "member_0.json").write_text("{}")
    return res


def test_rule_of_every_kind_of_result():
    assert rule_of("results/iter_003/models/member_2.pt") == "train"
    assert rule_of("results/iter_000/merged.h5") == "merge"
    assert rule_of("results/iter_001/selected/batch_0001.h5") == "select"
    assert rule_of("results/reference/barrier.json") == "reference_barrier"
    assert rule_of("results/iter_000/unseen_predictions.json") == "evaluate"
    assert Problem("results/iter_001/selected/batch_0001.h5", "missing").target == "results/iter_001/selected"
    assert rule_of("results/reference/rounds/round_01.json") == "reference_round"


def test_an_adaptive_reference_expects_the_replicas_its_barrier_read(tmp_path):
    """The replicas of an adaptive reference's later rounds, and its rounds' decisions, are
    those barrier.json lists (the config alone names only the first round)."""
    _tree(tmp_path)
    ref = tmp_path / "results" / "reference"
    ref.mkdir()
    replicas = [f"results/reference/smd/replica_{k:02d}.h5" for k in range(4)]
    (ref / "barrier.json").write_text(json.dumps({
        "replicas": replicas, "rounds": {"count": 2, "decisions": ["results/reference/rounds/round_00.json"]}}))
    cfg = validate_config({"reference": {"replicas": 2, "target_stderr_kcal": 1.0}, "model": {"members": 2}},
                          check_labeller=False)
    expected = expected_files(cfg, tmp_path)
    assert all(expected.count(r) == 1 for r in replicas)
    assert "results/reference/rounds/round_00.json" in expected
    problems, _ = check_results(cfg, tmp_path)
    assert {p.rule for p in problems if p.path == "results/reference/rounds/round_00.json"} == {"reference_round"}
    (ref / "barrier.json").write_text("{")  # damaged: named itself, the first round still expected
    expected = expected_files(cfg, tmp_path)
    assert replicas[1] in expected and replicas[2] not in expected


def test_missing_and_damaged_results_are_named_with_their_rerun(tmp_path, capsys):
    _tree(tmp_path)
    cfg = validate_config({"reference": {"replicas": 2}, "model": {"members": 2}}, check_labeller=False)
    expected = expected_files(cfg, tmp_path)
    assert "results/iter_000/labelled/batch_0000.h5" in expected
    assert "results/reference/barrier.json" in expected  # an evaluated iteration needs the reference
    assert not any(p.startswith("results/iter_001") for p in expected)
    problems, opened = check_results(cfg, tmp_path)
    found = {p.path: p for p in problems}
    assert found["results/iter_000/merged.h5"].what == "missing"
    assert found["results/iter_000/merged.h5"].rule == "merge"
    assert found["results/iter_000/models/member_1.pt"].rule == "train"
    assert found["results/iter_000/smd/replica_01.h5"].what == "missing"
    assert "not valid JSON (line 2 column 1" in found["results/iter_000/merge.json"].what
    assert "not a readable HDF5 file" in found["results/iter_000/smd/replica_00.h5"].what
    assert "results/iter_000/best.json" not in found and "results/iter_000/evaluation.json" not in found
    assert not any(".tmp" in p for p in found)
    assert opened == 7
    cmd = repair_command(problems, "--configfile my.yaml")
    assert cmd.startswith("snakemake --cores 2 --configfile my.yaml --forcerun ")
    assert " results/iter_000/merged.h5" in cmd and " results/iter_000/merge.json" in cmd
    # the command line interface, with the config the campaign ran with
    (tmp_path / "my.yaml").write_text("reference: {replicas: 2}\nmodel: {members: 2}\n")
    assert main(["--directory", str(tmp_path), "--configfile", str(tmp_path / "my.yaml")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "results/iter_000/merged.h5: missing (rule merge)" in out
    assert out[-1].strip().startswith("snakemake --cores 2 --configfile") and "--forcerun" in out[-1]
    assert out[-1].count("results/iter_000/smd/replica_00.h5") == 1


def test_damaged_selection_forces_the_checkpoint_folder(tmp_path):
    _tree(tmp_path)
    (tmp_path / "results" / "iter_000" / "selected" / "batch_0000.h5").write_bytes(b"junk")
    cfg = validate_config({"reference": {"replicas": 2}, "model": {"members": 2}}, check_labeller=False)
    problems, _ = check_results(cfg, tmp_path)
    bad = [p for p in problems if p.path == "results/iter_000/selected/batch_0000.h5"]
    assert len(bad) == 1 and bad[0].rule == "select"
    cmd = repair_command(bad)
    assert cmd.endswith("--forcerun results/iter_000/selected")


def test_healthy_results_pass(tmp_path, capsys):
    res = tmp_path / "results" / "iter_000"
    res.mkdir(parents=True)
    write_frames(res / "dataset.h5", _frames())
    (res / "best.json").write_text(json.dumps({"best_member": 0, "force_mae": [0.1]}))
    assert main(["--directory", str(tmp_path)]) == 0
    assert "results ok: 2 files opened" in capsys.readouterr().out
