"""HDF5 frame sets: round trip, provenance, dedup, atomic writes, bad files."""
import h5py
import numpy as np
import pytest
from ase.io import read

from rarelearn.atomic import atomic_path
from rarelearn.dataset import (DatasetError, Frames, frame_hash, merge_frames, read_frames, write_extxyz,
                               write_frames)


def make(n=5, seed=0, source="md"):
    rng = np.random.default_rng(seed)
    return Frames(numbers=[6, 1, 1], positions=rng.normal(size=(n, 3, 3)), energy=rng.normal(size=n),
                  forces=rng.normal(size=(n, 3, 3)), source=source, iteration=2, labeller="gfn2-xtb",
                  extras={"work": np.arange(n, dtype=float)}, attrs={"stop_reason": "completed"})


def test_round_trip_keeps_everything(tmp_path):
    f = make()
    f.status[1] = "failed"
    write_frames(tmp_path / "a.h5", f)
    g = read_frames(tmp_path / "a.h5")
    np.testing.assert_array_equal(g.positions, f.positions)
    np.testing.assert_array_equal(g.energy, f.energy)
    np.testing.assert_array_equal(g.forces, f.forces)
    assert list(g.status) == list(f.status) and list(g.source) == ["md"] * 5
    assert list(g.iteration) == [2] * 5 and g.labeller[0] == "gfn2-xtb"
    np.testing.assert_array_equal(g.extras["work"], np.arange(5.0))
    assert g.attrs["stop_reason"] == "completed"
    assert not g.ok[1] and g.ok[0]


def test_readable_with_h5py_alone(tmp_path):
    write_frames(tmp_path / "a.h5", make())
    with h5py.File(tmp_path / "a.h5") as h5:
        assert h5["positions"].shape == (5, 3, 3)
        assert h5["provenance/hash"][0].decode() == frame_hash([6, 1, 1], h5["positions"][0])
        assert h5.attrs["layout"] == "rarelearn-frames"


def test_merge_appends_and_deduplicates_by_hash():
    a, b = make(4, seed=1), make(3, seed=2)
    b.status[0] = "failed"
    merged, counts = merge_frames([a, b, a.subset([0, 2])])
    assert counts == {"input": 9, "duplicates": 2, "not_ok": 1, "output": 6}
    assert len(set(merged.hashes)) == len(merged) == 6
    np.testing.assert_array_equal(merged.positions[:4], a.positions)


def test_extxyz_export_reads_back_in_ase(tmp_path):
    f = make()
    write_extxyz(tmp_path / "a.xyz", f)
    images = read(tmp_path / "a.xyz", index=":")
    assert len(images) == 5
    np.testing.assert_allclose(images[3].get_potential_energy(), f.energy[3])
    np.testing.assert_allclose(images[3].get_forces(), f.forces[3])
    assert images[3].info["source"] == "md"


def test_truncated_file_is_refused_with_its_name(tmp_path):
    p = tmp_path / "a.h5"
    write_frames(p, make(50))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="a.h5"):
        read_frames(p)


def test_other_layout_or_version_is_refused(tmp_path):
    p = tmp_path / "a.h5"
    write_frames(p, make())
    with h5py.File(p, "a") as h5:
        h5.attrs["layout_version"] = 99
    with pytest.raises(DatasetError, match="layout version 99"):
        read_frames(p)
    q = tmp_path / "b.h5"
    with h5py.File(q, "w") as h5:
        h5["coordinates"] = np.zeros((2, 3, 3))
    with pytest.raises(DatasetError, match="not a rarelearn data set"):
        read_frames(q)
    with pytest.raises(DatasetError, match="no such data set"):
        read_frames(tmp_path / "missing.h5")


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_frames_of_other_molecules_do_not_merge():
    a = make()
    b = Frames(numbers=[8, 1, 1], positions=np.zeros((1, 3, 3)))
    with pytest.raises(DatasetError, match="different molecules"):
        merge_frames([a, b])


def test_nan_label_is_not_ok():
    f = make(3)
    f.forces[2, 0, 0] = np.nan
    assert list(f.ok) == [True, True, False]
