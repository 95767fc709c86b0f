"""Fault handling of the pipeline steps with the real labeller (GFN2-xTB on ethane)."""
import numpy as np
import pytest
from ase.build import molecule

from rarelearn.dataset import Frames, read_frames, write_frames
from rarelearn.pipeline import label_step, merge_step


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
    assert list(out.status) == ["ok", "ok", "failed", "failed"]
    assert np.isfinite(out.energy[:2]).all() and np.isnan(out.energy[2:]).all()
    back = read_frames(tmp_path / "out.h5")
    assert list(back.status) == list(out.status)


def test_retry_isolates_frames_and_times_out(ethane_batch, tmp_path):
    ok = label_step(ethane_batch, {"name": "gfn2-xtb", "options": {}}, tmp_path / "a.h5", attempt=2,
                    frame_timeout_s=60)
    assert list(ok.status) == ["ok", "ok", "failed", "failed"]
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
    assert (labelled.status == "failed").all()
    info = merge_step(tmp_path / "base.h5", [tmp_path / "lab.h5"], 0, tmp_path / "m.h5", tmp_path / "m.json")
    assert info["all_labels_failed"] and info["added"] == 0 and info["failed_labels"] == 2
    assert len(read_frames(tmp_path / "m.h5")) == 1
