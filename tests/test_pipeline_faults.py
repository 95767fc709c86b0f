"""Fault handling of the workflow steps (rarelearn.steps) with the real labeller (GFN2-xTB on ethane), and
damaged or unwritable result files."""
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from ase.build import molecule

from rarelearn.config import validate_config
from rarelearn.dataset import Frames, read_frames, write_frames
from rarelearn.models.committee import ModelError
from rarelearn.models.ani import build_networks, make_spec
from rarelearn.models.files import save_ensemble
from rarelearn.jsonio import ResultFileError, read_json
from rarelearn.learning.members import member_setup
from rarelearn.steps.train import best_model_step
from rarelearn.steps.label import label_step, merge_step
from rarelearn.models.files import load_model


@pytest.fixture()
def ethane_batch(tmp_path):
    atoms = molecule("C2H6")
    rng = np.random.default_rng(0)
    pos = atoms.positions[None] + rng.uniform(-0.05, 0.05, size=(4, len(atoms), 3))
    pos[2, 1] = pos[2, 0] + [0.01, 0, 0]  # two atoms 0.01 Å apart: xTB "converges", but not physically
    pos[3, 2:] = np.nan  # not a geometry at all
    frames = Frames(numbers=atoms.numbers, positions=pos, source="al", iteration=0)
    path = tmp_path / "batch.h5"
    write_frames(path, frames)
    return path


def test_bad_frames_fail_and_the_batch_goes_on(ethane_batch, tmp_path):
    out = label_step(ethane_batch, {"name": "gfn2-xtb", "options": {}}, tmp_path / "out.h5")
    # frame 2: xTB returns a label for atoms 0.01 Å apart, screened out; frame 3: no geometry
    assert list(out.status) == ["ok", "ok", "screened", "failed"]
    assert np.isfinite(out.energy[:3]).all() and np.isnan(out.energy[3])
    assert out.attrs["screened"] and "0.010 Å apart" in out.attrs["screened"][0]
    back = read_frames(tmp_path / "out.h5")
    assert list(back.status) == list(out.status)
    assert not back.ok[2:].any()


def test_retry_isolates_frames_and_times_out(ethane_batch, tmp_path):
    ok = label_step(ethane_batch, {"name": "gfn2-xtb", "options": {}}, tmp_path / "a.h5", attempt=2,
                    frame_timeout_s=60)
    assert list(ok.status) == ["ok", "ok", "screened", "failed"]
    first = label_step(ethane_batch, {"name": "gfn2-xtb", "options": {}}, tmp_path / "b.h5")
    np.testing.assert_allclose(ok.energy[:2], first.energy[:2], rtol=0, atol=1e-8)
    slow = label_step(ethane_batch, {"name": "gfn2-xtb", "options": {}}, tmp_path / "c.h5", attempt=3,
                      frame_timeout_s=1e-4)
    assert (slow.status == "failed").all()
    assert any("timed out" in r for r in slow.attrs["failures"])


def test_all_labels_failed_leaves_the_data_set_unchanged(ethane_batch, tmp_path):
    atoms = molecule("C2H6")
    base = Frames(numbers=atoms.numbers, positions=atoms.positions[None], energy=[-1.0],
                  forces=np.zeros((1, 8, 3)), source="md")
    write_frames(tmp_path / "base.h5", base)
    bad = read_frames(ethane_batch).subset([2, 3])
    write_frames(tmp_path / "bad.h5", bad)
    labelled = label_step(tmp_path / "bad.h5", {"name": "gfn2-xtb", "options": {}}, tmp_path / "lab.h5")
    assert list(labelled.status) == ["screened", "failed"]
    info = merge_step(tmp_path / "base.h5", [tmp_path / "lab.h5"], 0, tmp_path / "m.h5", tmp_path / "m.json")
    assert info["all_labels_failed"] and info["added"] == 0
    assert info["failed_labels"] == 1 and info["screened_labels"] == 1
    assert len(read_frames(tmp_path / "m.h5")) == 1


# ---------------------------------------------------------------- screening (issue 18, item 12)
def _compressed_ethane(cc_distance):
    """Ethane with its second methyl group moved along the C–C axis to ``cc_distance`` Å."""
    atoms = molecule("C2H6")
    axis = atoms.positions[1] - atoms.positions[0]
    shift = atoms.positions[0] + axis / np.linalg.norm(axis) * cc_distance - atoms.positions[1]
    atoms.positions[[1, 5, 6, 7]] += shift
    return atoms


def test_unphysical_labels_are_screened_recorded_and_not_trained_on(tmp_path):
    """Two carbons 0.8 Å apart: no atoms closer than 0.5 Å, but GFN2-xTB gives |F| ~ 190 eV/Å,
    beyond the 50 eV/Å at which an SMD run counts as blown up. The label is kept for
    inspection with status `screened`, left out of the merge and counted in merge.json."""
    screen = validate_config({}, check_labeller=False)["labelling"]
    assert screen["max_force"] == 50.0 and screen["min_distance"] == 0.5  # the rule is in the schema
    good, squeezed = molecule("C2H6"), _compressed_ethane(0.8)
    batch = Frames(numbers=good.numbers, positions=np.stack([good.positions, squeezed.positions]), source="al",
                   iteration=0)
    write_frames(tmp_path / "batch.h5", batch)
    out = label_step(tmp_path / "batch.h5", {"name": "gfn2-xtb", "options": {}}, tmp_path / "lab.h5",
                     screen={"max_force": screen["max_force"], "min_distance": screen["min_distance"]})
    assert list(out.status) == ["ok", "screened"]
    fmax = np.linalg.norm(out.forces[1], axis=1).max()
    assert fmax > 100 and np.isfinite(out.energy[1])  # the label itself is kept
    assert out.extras["label_max_force"][1] == pytest.approx(fmax)
    assert "eV/Å (> 50.0 eV/Å)" in out.attrs["screened"][0]
    back = read_frames(tmp_path / "lab.h5")
    assert list(back.status) == ["ok", "screened"] and back.attrs["screen"]["max_force"] == 50.0
    base = Frames(numbers=good.numbers, positions=good.positions[None] + 0.02, energy=[-1.0],
                  forces=np.zeros((1, 8, 3)), source="md")
    write_frames(tmp_path / "base.h5", base)
    info = merge_step(tmp_path / "base.h5", [tmp_path / "lab.h5"], 0, tmp_path / "m.h5", tmp_path / "m.json")
    assert info["screened_labels"] == 1 and info["failed_labels"] == 0 and info["added"] == 1
    assert json.loads((tmp_path / "m.json").read_text())["screened_labels"] == 1
    merged = read_frames(tmp_path / "m.h5")
    assert len(merged) == 2 and np.abs(merged.forces).max() < 50
    # with the force rule switched off the same label is kept
    off = label_step(tmp_path / "batch.h5", {"name": "gfn2-xtb", "options": {}}, tmp_path / "off.h5",
                     screen={"max_force": None, "min_distance": 0.5})
    assert list(off.status) == ["ok", "ok"]


# ---------------------------------------------------------------- damaged result files (item 9)
def _one_line_naming(exc, path):
    msg = str(exc.value)
    assert str(path) in msg and "\n" not in msg, msg
    return msg


def test_corrupt_json_names_the_file_and_the_remake(tmp_path):
    path = tmp_path / "results" / "reference" / "barrier.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"ea_mean": 1.0,\n')
    with pytest.raises(ResultFileError) as exc:
        read_json(path)
    msg = _one_line_naming(exc, path)
    assert "not valid JSON (line 2 column 1" in msg and f"--forcerun {path}" in msg
    assert "JSONDecodeError" not in msg
    with pytest.raises(ResultFileError, match="no such file"):
        read_json(tmp_path / "results" / "nope.json")


def _member_file(path, seed=0):
    spec = make_spec(["H", "C"], {"H": [8], "C": [8]}, {"H": -10.0, "C": -40.0})
    torch.manual_seed(seed)
    save_ensemble(path, [build_networks(spec).state_dict()], spec)
    return path


def test_corrupt_member_file_is_named_by_best_model_and_warm_start(tmp_path):
    models = tmp_path / "results" / "iter_000" / "models"
    models.mkdir(parents=True)
    good = _member_file(models / "member_1.pt")
    bad = models / "member_0.pt"
    bad.write_bytes(good.read_bytes()[:300])  # truncated
    data = tmp_path / "data.h5"
    atoms = molecule("C2H6")
    write_frames(data, Frames(numbers=atoms.numbers, positions=atoms.positions[None], energy=[-1.0],
                              forces=np.zeros((1, 8, 3)), source="md"))
    with pytest.raises(ModelError) as exc:
        best_model_step(data, [bad, good], tmp_path / "ens.pt", tmp_path / "best.json")
    msg = _one_line_naming(exc, bad)
    assert "not a readable rarelearn model file" in msg and f"--forcerun {bad}" in msg
    assert not (tmp_path / "ens.pt").exists()
    frames = read_frames(data)
    training = {"epochs": 1, "batch_size": 1, "lr": 1e-3, "force_weight": 0.1, "train_fraction": 0.5,
                "early_stopping_patience": None, "lr_patience": None, "split": "random", "warm_start": True}
    with pytest.raises(ModelError) as exc:
        member_setup(frames, training, iteration=1, member=0, previous_dir=tmp_path / "results" / "iter_000")
    _one_line_naming(exc, bad)
    bad.write_bytes(b"garbage" * 20)
    with pytest.raises(ModelError, match="not a readable rarelearn model file"):
        best_model_step(data, [bad], tmp_path / "ens.pt", tmp_path / "best.json")


class _NotAModel:
    pass


def test_refused_model_file_does_not_repeat_the_weights_only_advice(tmp_path):
    path = tmp_path / "results" / "iter_000" / "ensemble.pt"
    path.parent.mkdir(parents=True)
    torch.save({"format": "rarelearn-ani", "members": [_NotAModel()]}, path)
    with pytest.raises(ModelError) as exc:
        load_model(path)
    msg = _one_line_naming(exc, path)
    assert "weights_only" not in msg and "Re-running" not in msg and "trust" not in msg
    assert "UnpicklingError" in msg and f"--forcerun {path}" in msg


# ---------------------------------------------------------------- full disk (item 11)
_DISK_FULL = textwrap.dedent("""
    import json, os, subprocess, sys
    import numpy as np
    d = sys.argv[1]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", d], check=True)
    from rarelearn.dataset import Frames, write_frames
    from rarelearn.models.ani import build_networks, make_spec
    from rarelearn.models.files import save_ensemble
    from rarelearn.jsonio import write_json
    spec = make_spec(["H", "C"], {"H": [64, 64], "C": [64, 64]}, {"H": -10.0, "C": -40.0})
    state = build_networks(spec).state_dict()
    jobs = {
        "results/iter_000/models/member_0.pt": lambda p: save_ensemble(p, [state] * 8, spec),
        "results/iter_000/merged.h5":
            lambda p: write_frames(p, Frames(numbers=[1] * 20, positions=np.zeros((2000, 20, 3)))),
        "results/iter_000/merge.json": lambda p: write_json(p, {"x": list(range(100000))}),
    }
    out = {}
    for rel, write in jobs.items():
        path = os.path.join(d, rel)
        try:
            write(path)
            out[rel] = None
        except Exception as exc:
            out[rel] = [type(exc).__name__, str(exc)]
    out["left"] = sorted(os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs)
    print(json.dumps(out))
""")


def test_full_disk_is_named_and_leaves_nothing_partial(tmp_path):
    """A real full disk: a 128 KiB tmpfs in a private mount namespace (unshare)."""
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "--user", "--map-root-user", "--mount", "true"],
                           capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip("cannot make a small filesystem here (unshare --user --mount not allowed)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(_DISK_FULL)
    res = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, str(script),
                          str(mnt)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for rel in ("results/iter_000/models/member_0.pt", "results/iter_000/merged.h5",
                "results/iter_000/merge.json"):
        assert out[rel] is not None, f"{rel} fitted on the small disk"
        kind, msg = out[rel]
        assert kind == "OSError" and "No space left on device" in msg and rel in msg and "\n" not in msg, msg
        assert "basic_ios" not in msg and "inline_container" not in msg
    assert out["left"] == [], out["left"]  # nothing partial, no temporary file

