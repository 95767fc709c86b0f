"""Samplers ``cogef`` and ``smd+cogef`` (issue 21): frames of the potential's own COGEF path
selected by the committee's spread, with the SMD sampler's screening, post-break cap,
budget and augmentation; and through Snakemake on the session's tiny campaign."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from ase import Atoms

from conftest import jobs_run, snakemake, write_config
from rarelearn.chem.breaks import find_break
from rarelearn.md.cogef import cogef_profile
from rarelearn.dataset import Frames, read_frames, write_frames
from rarelearn.steps.label import merge_step
from rarelearn.steps.select import select_step
from test_cogef import MorseBonds

SEL = {"uq_first_steps": 5, "n_sigma": 3.0, "max_post_break": 50, "max_frames": 50, "min_distance_gap": 0.01,
       "min_energy_gap_kcal": 1.0, "augment_copies": 2, "augment_amplitude": 0.05, "seed": 11,
       "blowup_lookback": 10}


@pytest.fixture(scope="module")
def path_h5(tmp_path_factory):
    """A real COGEF path (a C4 Morse chain pulled end to end, the weak middle bond breaks)
    written as the workflow writes an iteration's cogef.h5, with a committee spread that
    grows along the path."""
    d = tmp_path_factory.mktemp("cogef")
    atoms = Atoms("C4", positions=[(0, 0, 0), (1.5, 0, 0), (3.0, 0, 0), (4.5, 0, 0)])
    calc = MorseBonds([(0, 1, 5.0, 2.0, 1.5), (1, 2, 3.0, 2.0, 1.5), (2, 3, 5.0, 2.0, 1.5)])
    prof = cogef_profile(atoms, calc, (0, 3), step=0.1, max_extension=3.0, post_break_extension=1.0, fmax=1e-3)
    fr = prof.frames
    fr.extras["uq_sigma"] = 0.01 + 0.1 * fr.extras["extension"]
    write_frames(d / "cogef.h5", fr)
    return d / "cogef.h5"


def _replicas(tmp_path, thresholds):
    """SMD replicas of 20 frames each, with uq.h5 groups whose thresholds are ``thresholds``
    and whose σ exceeds them on frames 10-19 (the SMD candidates)."""
    rng = np.random.default_rng(0)
    paths = []
    with h5py.File(tmp_path / "uq.h5", "w") as h5:
        for r, thr in enumerate(thresholds):
            pos = np.array([[0, 0, 0], [1.5, 0, 0], [3.0, 0, 0], [4.5, 0, 0]])[None] + rng.normal(0, 0.01, (20, 4, 3))
            pos[:, 3, 0] += np.linspace(0, 0.4, 20)
            fr = Frames(numbers=np.full(4, 6), positions=pos, source="smd",
                        extras={"spring_distance": np.linspace(4.5, 4.9, 20)})
            p = tmp_path / f"replica_{r:02d}.h5"
            write_frames(p, fr)
            paths.append(p)
            g = h5.create_group(p.stem)
            g.create_dataset("energies", data=np.tile(np.linspace(0, 2.0, 20), (3, 1)))
            g.create_dataset("sigma", data=np.where(np.arange(20) >= 10, thr + 0.05, thr / 2))
            g.attrs["threshold"] = thr
    return tmp_path / "uq.h5", paths


def _selected(out):
    frames = [read_frames(p) for p in sorted(out.glob("batch_*.h5"))]
    return Frames.concatenate(frames), json.loads((out / "selection.json").read_text())


def test_cogef_sampler_picks_path_images_above_the_median_smd_threshold(tmp_path, path_h5):
    uq, reps = _replicas(tmp_path, [0.05, 0.1, 0.3])
    s = select_step(uq, reps, SEL, 1000, 4, tmp_path / "sel", cogef_paths=[path_h5], cogef_frames=25, smd=False)
    path = read_frames(path_h5)
    sigma, ext = path.extras["uq_sigma"], path.extras["extension"]
    rec, = s["cogef"]
    assert rec["threshold"] == pytest.approx(0.1)          # the median, not the mean (0.15)
    assert rec["candidates"] == int((sigma > 0.1).sum()) > 0
    idx = np.array(rec["indices"])
    assert (sigma[idx] > 0.1).all() and s["replicas"] == [] and s["sources"] == {"cogef": len(idx)}
    # screening: the kept images on each side of the break differ from each other by
    # > 1 kcal/mol (selection.post_break_screening: separate, the default)
    for side in (idx[idx < rec["break_index"]], idx[idx >= rec["break_index"]]):
        e = path.extras["potential_energy"][side]
        assert len(side) > 1
        assert np.abs(np.subtract.outer(e, e))[~np.eye(len(side), dtype=bool)].min() > 0.0433
    new, _ = _selected(tmp_path / "sel")
    kept = new.subset(new.source == "cogef")
    np.testing.assert_array_equal(kept.positions, path.positions[idx])   # the relaxed images themselves
    assert (new.source == "augment").sum() == 2 * len(idx) and (new.iteration == 4).all()
    assert (new.status == "unlabelled").all() and np.isnan(new.energy).all()
    # images past the break are selected too
    bi = find_break(path.numbers, path.positions).index
    assert bi is not None and (idx >= bi).any() and (idx < bi).any()
    assert rec["extensions"] == pytest.approx(ext[idx].tolist())


def test_cogef_sampler_caps_post_break_and_total(tmp_path, path_h5):
    uq, reps = _replicas(tmp_path, [0.02])
    path = read_frames(path_h5)
    bi = find_break(path.numbers, path.positions).index
    free = select_step(uq, reps, SEL, 1000, 0, tmp_path / "a", cogef_paths=[path_h5], smd=False)
    assert sum(i >= bi for i in free["cogef"][0]["indices"]) > 2
    capped = select_step(uq, reps, {**SEL, "max_post_break": 2, "max_frames": 6}, 1000, 0, tmp_path / "b",
                         cogef_paths=[path_h5], smd=False)
    idx = capped["cogef"][0]["indices"]
    assert len(idx) == 6 and sum(i >= bi for i in idx) <= 2 and capped["selected"] == 6


def test_cogef_sampler_takes_every_members_path(tmp_path, path_h5):
    """sampler.cogef_paths: all: images of every path are candidates, judged against the same
    threshold, the budget spread over all of them."""
    uq, reps = _replicas(tmp_path, [0.02])
    other = read_frames(path_h5)
    other.positions = other.positions * 1.02          # another member's path: other geometries
    other.extras["uq_sigma"] = np.asarray(other.extras["uq_sigma"]) + 0.05
    write_frames(tmp_path / "other.h5", other)
    one = select_step(uq, reps, SEL, 1000, 0, tmp_path / "one", cogef_paths=[path_h5], smd=False)
    two = select_step(uq, reps, SEL, 1000, 0, tmp_path / "two", cogef_paths=[path_h5, tmp_path / "other.h5"],
                      smd=False)
    a, b = two["cogef"]
    assert a["indices"] == one["cogef"][0]["indices"] and a["threshold"] == b["threshold"] == pytest.approx(0.02)
    assert len(b["indices"]) > 0 and two["sources"]["cogef"] == len(a["indices"]) + len(b["indices"])
    new, _ = _selected(tmp_path / "two")
    kept = set(new.subset(new.source == "cogef").hashes)
    assert kept & set(read_frames(path_h5).hashes) and kept & set(other.hashes)
    capped = select_step(uq, reps, {**SEL, "max_frames": 8}, 1000, 0, tmp_path / "cap",
                         cogef_paths=[path_h5, tmp_path / "other.h5"], smd=False)
    new, _ = _selected(tmp_path / "cap")
    kept = set(new.subset(new.source == "cogef").hashes)
    assert capped["selected"] == 8 and kept & set(read_frames(path_h5).hashes) and kept & set(other.hashes)


def test_branch_images_label_the_paths_last_intact_images_whatever_the_spread(tmp_path, path_h5):
    """sampler.branch_images: intact images just below each path's maximum are added on top of
    the UQ selection, without noisy copies, even where the committee agrees (σ under the
    threshold), and none is taken twice."""
    uq, reps = _replicas(tmp_path, [1.0])                  # a threshold no path image exceeds
    path = read_frames(path_h5)
    ext, intact = path.extras["extension"], path.extras["intact"] > 0.5
    e = np.where(intact, path.extras["potential_energy"], -np.inf)
    top = ext[int(np.argmax(e))]
    window = 0.35
    below = np.flatnonzero(intact & (ext >= top - window) & (ext <= top))
    assert len(below) >= 4 and (path.extras["uq_sigma"][below] < 1.0).all()
    plain = select_step(uq, reps, SEL, 1000, 2, tmp_path / "plain", cogef_paths=[path_h5], cogef_frames=5)
    assert "cogef" not in plain["sources"] and "cogef-branch" not in plain["sources"]
    s = select_step(uq, reps, {**SEL, "branch": {"images": 3, "window": window}}, 1000, 2, tmp_path / "b",
                    cogef_paths=[path_h5], cogef_frames=5)
    rec = s["cogef"][0]["branch"]
    assert rec["candidates"] == len(below) and rec["kept"] == 3 and s["sources"]["cogef-branch"] == 3
    assert set(rec["indices"]) <= set(below.tolist()) and rec["indices"][-1] == int(np.argmax(e))
    assert rec["extension_at_max"] == pytest.approx(top)
    # spread over the window in extension: the picks' extensions are each the nearest to one
    # of three evenly spaced targets
    for t, i in zip(np.linspace(top - window, top, 3), rec["indices"]):
        assert abs(ext[i] - t) == pytest.approx(np.abs(ext[below] - t).min())
    new, _ = _selected(tmp_path / "b")
    branch = new.subset(new.source == "cogef-branch")
    np.testing.assert_array_equal(branch.positions, path.positions[rec["indices"]])
    assert (branch.iteration == 2).all() and (branch.status == "unlabelled").all()
    assert (new.source == "augment").sum() == 2 * (new.source == "al").sum()     # no copies of the branch's
    assert s["selected"] == plain["selected"] + 3
    # sampler.branch_steps: the branch images marked for the labeller's steps, the rest not
    s = select_step(uq, reps, {**SEL, "branch": {"images": 3, "window": window, "steps": 4}}, 1000, 2,
                    tmp_path / "steps", cogef_paths=[path_h5], cogef_frames=5)
    new, _ = _selected(tmp_path / "steps")
    marked = new.extras["labeller_steps"]
    assert (marked[new.source == "cogef-branch"] == 4).all() and (marked[new.source != "cogef-branch"] == 0).all()
    assert new.attrs["cogef_pull"] == [int(a) for a in path.attrs["pull"]] and s["selected"] == plain["selected"] + 3
    # a low threshold: the UQ selection keeps path images; the branch adds others only
    uq, reps = _replicas(tmp_path, [0.02])
    both = select_step(uq, reps, {**SEL, "branch": {"images": 20, "window": window}}, 1000, 2, tmp_path / "c",
                       cogef_paths=[path_h5], smd=False)
    kept, extra = set(both["cogef"][0]["indices"]), set(both["cogef"][0]["branch"]["indices"])
    assert kept and extra and not kept & extra and kept | extra >= set(below.tolist())


def test_smd_plus_cogef_splits_the_budget(tmp_path, path_h5):
    uq, reps = _replicas(tmp_path, [0.02, 0.02])
    smd_only = select_step(uq, reps, {**SEL, "max_frames": None}, 1000, 0, tmp_path / "smd")
    n_smd = smd_only["selected"]
    assert smd_only["sources"] == {"al": n_smd} and n_smd > 4
    both = select_step(uq, reps, {**SEL, "max_frames": 12}, 1000, 0, tmp_path / "both", cogef_paths=[path_h5],
                       cogef_frames=5)
    assert both["sources"]["cogef"] == 5 and both["sources"]["al"] == 12 - 5 and both["selected"] == 12
    new, _ = _selected(tmp_path / "both")
    assert (new.source == "cogef").sum() == 5 and (new.source == "al").sum() == 7
    # the SMD frames are the plain SMD selection thinned to the room left
    plain, _ = _selected(tmp_path / "smd")
    plain_al = {h for h, s in zip(plain.hashes, plain.source) if s == "al"}
    assert {h for h, s in zip(new.hashes, new.source) if s == "al"} <= plain_al


def test_merge_counts_cogef_frames_as_selected(tmp_path, path_h5):
    path = read_frames(path_h5).subset([0, 5, 9])
    base = Frames(numbers=path.numbers, positions=path.positions[:1] + 0.3, energy=np.zeros(1),
                  forces=np.zeros((1, 4, 3)), source="md", labeller="x")
    new = Frames(numbers=path.numbers, positions=path.positions, energy=np.ones(3), forces=np.zeros((3, 4, 3)),
                 source=["cogef", "cogef", "augment"], labeller="x", iteration=1)
    write_frames(tmp_path / "d.h5", base)
    write_frames(tmp_path / "l.h5", new)
    info = merge_step(tmp_path / "d.h5", [tmp_path / "l.h5"], 1, tmp_path / "m.h5", tmp_path / "m.json")
    assert info["selected"] == 2 and info["augmented"] == 1 and info["total_frames"] == 4


def _one_iteration_again(wd, config_path, **overrides):
    """Iteration 0 of the campaign copied to ``wd`` run again with the tiny config and
    ``overrides``: only the selection and what follows it rerun (the members, pulls and COGEF
    path are reused). Returns (iteration 0's folder, its selection record)."""
    res = snakemake(wd, configfile=write_config(config_path, **{"campaign.max_iterations": 1, **overrides}))
    assert res.returncode == 0, res.stderr[-4000:]
    counts = jobs_run(res.stdout + res.stderr)
    assert counts["select"] == 1 and "train" not in counts and "smd_batch" not in counts and "cogef" not in counts
    it = wd / "results" / "iter_000"
    return it, json.loads((it / "selected" / "selection.json").read_text())


@pytest.mark.slow
def test_smd_plus_cogef_campaign_labels_frames_of_the_potentials_path(campaign, tmp_path):
    wd = tmp_path / "c"
    shutil.copytree(campaign, wd, symlinks=True)
    it, sel = _one_iteration_again(wd, tmp_path / "cg.yaml", **{"sampler.kind": "smd+cogef", "sampler.cogef_frames": 4})
    path = read_frames(it / "cogef.h5")
    assert 0 < sel["sources"]["cogef"] <= 4
    rec, = sel["cogef"]
    assert (path.extras["uq_sigma"][rec["indices"]] > rec["threshold"]).all()
    labelled = Frames.concatenate([read_frames(p) for p in sorted((it / "labelled").glob("batch_*.h5"))])
    lab = labelled.subset(labelled.source == "cogef")
    # every selected image was labelled (the tiny potential's relaxed images may be screened out
    # as unphysical: labelling.max_force, min_distance), and they are images of the path
    assert len(lab) == sel["sources"]["cogef"] and set(lab.hashes) <= set(path.hashes)
    assert set(lab.status) <= {"ok", "screened", "failed"} and (lab.labeller == "gfn2-xtb").all()
    merged = read_frames(it / "merged.h5")
    from_path = merged.subset(merged.source == "cogef")
    assert set(from_path.hashes) == {h for h, st in zip(lab.hashes, lab.status) if st == "ok"}
    # the reference's COGEF images stay test data
    assert not set(read_frames(wd / "results" / "reference" / "cogef.h5").hashes) & set(merged.hashes)


def test_labeller_steps_relax_the_paths_images_with_the_labeller_and_label_every_step(tmp_path):
    """sampler.labeller_steps N: the selection keeps a 1/N share of path images and marks them
    (not their noisy copies); the label step relaxes each N − 1 BFGS steps with GFN2-xTB under
    the path's constraint and labels every structure: the energy goes down the labeller's way,
    the pulled distance stays, and a retry labels the batch's own frames only."""
    from conftest import write_prepared_butane

    from rarelearn.chem.molecules import load_prepared_molecule
    from rarelearn.steps.label import label_step

    mol, g1, g2 = load_prepared_molecule(write_prepared_butane(tmp_path))
    i, j = g1[0], g2[0]
    # a "potential's path": butane stretched along its pulled atoms, unrelaxed (far from GFN2's path)
    u = (mol.positions[j] - mol.positions[i]) / np.linalg.norm(mol.positions[j] - mol.positions[i])
    ext = np.linspace(0.0, 1.0, 11)
    pos = np.array([mol.positions + np.outer(np.where(np.arange(len(mol)) == j, 1.0, 0.0), u) * e for e in ext])
    path = Frames(numbers=mol.numbers, positions=pos, source="cogef",
                  extras={"extension": ext, "potential_energy": np.linspace(0, 1, 11), "intact": np.ones(11),
                          "uq_sigma": np.full(11, 1.0)},
                  attrs={"pull": [int(i), int(j)]})
    write_frames(tmp_path / "path.h5", path)
    uq, reps = _replicas(tmp_path, [0.02, 0.04])
    sel = {**SEL, "max_frames": 6}
    plain = select_step(uq, reps, sel, 1000, 3, tmp_path / "plain", cogef_paths=[tmp_path / "path.h5"], smd=False)
    steps = select_step(uq, reps, {**sel, "labeller_steps": 3}, 1000, 3, tmp_path / "steps",
                        cogef_paths=[tmp_path / "path.h5"], smd=False)
    assert plain["sources"]["cogef"] == 6 and steps["sources"]["cogef"] == 2      # 6 // 3 images
    assert steps["labeller_steps"] == {"steps": 3, "images": 2, "pull": [int(i), int(j)]}
    batch = tmp_path / "steps" / "batch_0000.h5"
    fr = read_frames(batch)
    assert len(fr) == 6 and list(fr.extras["labeller_steps"]) == [3, 3, 0, 0, 0, 0]   # images, then copies
    assert fr.attrs["cogef_pull"] == [int(i), int(j)]
    lab = label_step(batch, {"name": "gfn2-xtb"}, tmp_path / "labelled.h5")
    # 6 frames + 2 steps from each of the 2 images, all labelled by GFN2-xTB
    assert len(lab) == 10 and (lab.status == "ok").all() and (lab.labeller == "gfn2-xtb").all()
    way = lab.subset(lab.source == "cogef-steps")
    assert len(way) == 4 and (way.iteration == 3).all()
    for k in range(2):   # each image's way: down in GFN2's energy, the pulled distance kept
        e = [lab.energy[k], way.energy[2 * k], way.energy[2 * k + 1]]
        assert e[0] > e[1] > e[2]
        d = np.linalg.norm(way.positions[2 * k:2 * k + 2, j] - way.positions[2 * k:2 * k + 2, i], axis=1)
        assert d == pytest.approx(np.linalg.norm(fr.positions[k, j] - fr.positions[k, i]), abs=1e-6)
    info = merge_step(batch, [tmp_path / "labelled.h5"], 3, tmp_path / "m.h5", tmp_path / "m.json")
    assert info["labeller_steps"] == 4 and info["selected"] == 2 and info["augmented"] == 4
    retry = label_step(batch, {"name": "gfn2-xtb"}, tmp_path / "retry.h5", attempt=2, frame_timeout_s=60)
    assert len(retry) == 6 and "cogef-steps" not in set(retry.source)


@pytest.mark.slow
def test_labeller_steps_in_a_campaign(campaign, tmp_path):
    """sampler.labeller_steps through Snakemake: only the selection and what follows rerun, the
    path's images are relaxed by GFN2-xTB in the label jobs and every step reaches the data
    set; the same command again plans nothing."""
    wd = tmp_path / "c"
    shutil.copytree(campaign, wd, symlinks=True)
    _one_iteration_again(wd, tmp_path / "cg.yaml", **{"sampler.kind": "cogef"})
    steps = {"sampler.kind": "cogef", "sampler.labeller_steps": 2}
    it, sel = _one_iteration_again(wd, tmp_path / "st.yaml", **steps)
    images = sel["labeller_steps"]["images"]
    assert images == sel["sources"]["cogef"] > 0 and sel["labeller_steps"]["steps"] == 2
    labelled = Frames.concatenate([read_frames(p) for p in sorted((it / "labelled").glob("batch_*.h5"))])
    way = labelled.subset(labelled.source == "cogef-steps")
    selected = Frames.concatenate([read_frames(p) for p in sorted((it / "selected").glob("batch_*.h5"))])
    image_hashes = set(selected.hashes[np.asarray(selected.extras["labeller_steps"]) > 1])
    marked = np.isin(labelled.hashes, list(image_hashes))
    assert int(marked.sum()) == images
    # one step from each image the labeller can compute: the tiny potential's stable-branch
    # path falls into holes of it (atoms 0.03 Å apart), images screened as unphysical or whose
    # SCF fails (that one ends its way)
    computed = int((marked & (labelled.status != "failed")).sum())
    assert len(way) == computed and (way.labeller == "gfn2-xtb").all()
    merge = json.loads((it / "merge.json").read_text())
    assert merge["labeller_steps"] == len(way)
    # every label counted: the reference MD's, the images, their copies and the steps
    import pandas as pd
    md = len(read_frames(wd / "results" / "reference" / "md.h5"))
    summary = pd.read_csv(wd / "results" / "summary.csv")
    assert summary.labels_total.iloc[-1] == md + merge["selected"] + merge["augmented"] + merge["labeller_steps"]
    assert summary.frames_labeller_steps.iloc[-1] == len(way)
    merged = read_frames(it / "merged.h5")
    assert set(merged.hashes[merged.source == "cogef-steps"]) == set(way.hashes[way.status == "ok"])
    again = snakemake(wd, "-n", configfile=tmp_path / "st.yaml")
    assert again.returncode == 0 and not jobs_run(again.stdout + again.stderr)


def test_descent_steps_start_the_labellers_way_down_near_the_potentials_maximum(tmp_path):
    """sampler.descent_steps N: on top of the selection, images near the top of the best
    member's COGEF path displaced along their softest constrained mode (one sign), marked for
    N − 1 labeller steps; the label step relaxes them with GFN2-xTB under the pull, the
    pulled distance kept, and the merge counts them as selected."""
    import torch

    from conftest import write_prepared_butane

    from rarelearn.chem.molecules import load_prepared_molecule
    from rarelearn.jsonio import write_json
    from rarelearn.models.ani import build_ani, make_spec
    from rarelearn.models.files import save_ensemble
    from rarelearn.steps.label import label_step

    mol, g1, g2 = load_prepared_molecule(write_prepared_butane(tmp_path))
    i, j = g1[0], g2[0]
    u = (mol.positions[j] - mol.positions[i]) / np.linalg.norm(mol.positions[j] - mol.positions[i])
    ext = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.76, 0.8, 0.9])
    pos = np.array([mol.positions + np.outer(np.where(np.arange(len(mol)) == j, 1.0, 0.0), u) * e for e in ext])
    energy = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.76, 0.8, 0.4])   # the top at image 9 (Δ 0.8 Å)
    path = Frames(numbers=mol.numbers, positions=pos, source="cogef",
                  extras={"extension": ext, "potential_energy": energy, "intact": np.ones(11),
                          "uq_sigma": np.full(11, 1.0)},
                  attrs={"pull": [int(i), int(j)]})
    write_frames(tmp_path / "path.h5", path)
    torch.manual_seed(0)
    spec = make_spec(["H", "C"], {"H": [8], "C": [8]}, {"H": -10.7, "C": -48.8})
    save_ensemble(tmp_path / "ensemble.pt", [build_ani(spec["elements"], spec["hidden"], spec["self_energies"])
                                            .neural_networks.members[0].state_dict() for _ in range(2)], spec)
    write_json(tmp_path / "best.json", {"best_member": 1})
    files = {"path": tmp_path / "path.h5", "ensemble": tmp_path / "ensemble.pt", "best": tmp_path / "best.json"}
    uq, reps = _replicas(tmp_path, [0.02, 0.04])
    sel = {**SEL, "max_frames": 4, "descent": {"steps": 3, "images": 2}}
    out = select_step(uq, reps, sel, 1000, 2, tmp_path / "sel", cogef_paths=[tmp_path / "path.h5"], smd=False,
                      descent_files=files)
    assert out["sources"] == {"cogef": 4, "soft-mode": 2} and out["selected"] == 6 and out["augmented"] == 8
    rec = out["descent"]
    assert rec["steps"] == 3 and rec["starts"] == 2 and rec["pull"] == [int(i), int(j)]
    # the window is the 0.05 Å up to the top: Δ 0.76 and 0.8 Å
    assert rec["extensions"] == pytest.approx([0.76, 0.8])
    fr = Frames.concatenate([read_frames(p) for p in sorted((tmp_path / "sel").glob("batch_*.h5"))])
    starts = fr.subset(fr.source == "soft-mode")
    assert len(starts) == 2 and (starts.extras["labeller_steps"] == 3).all()
    assert (fr.extras["labeller_steps"][fr.source != "soft-mode"] == 0).all() and fr.attrs["cogef_pull"] == [i, j]
    shift = starts.positions - pos[[8, 9]]
    assert np.linalg.norm(shift, axis=2).max(axis=1) == pytest.approx([0.1, 0.1])   # 0.1 Å at the atom moving most
    d0 = np.linalg.norm(pos[[8, 9], j] - pos[[8, 9], i], axis=1)
    assert np.linalg.norm(starts.positions[:, j] - starts.positions[:, i], axis=1) == pytest.approx(d0, abs=0.01)
    write_frames(tmp_path / "starts.h5", starts)
    lab = label_step(tmp_path / "starts.h5", {"name": "gfn2-xtb"}, tmp_path / "labelled.h5")
    way = lab.subset(lab.source == "cogef-steps")
    assert len(lab) == 2 + 4 and len(way) == 4 and (lab.status == "ok").all()
    for k in range(2):   # down the labeller's energy, the pulled distance kept
        assert lab.energy[k] > way.energy[2 * k] > way.energy[2 * k + 1]
        d = np.linalg.norm(way.positions[2 * k:2 * k + 2, j] - way.positions[2 * k:2 * k + 2, i], axis=1)
        assert d == pytest.approx(np.linalg.norm(starts.positions[k, j] - starts.positions[k, i]), abs=1e-6)
    info = merge_step(tmp_path / "starts.h5", [tmp_path / "labelled.h5"], 2, tmp_path / "m.h5", tmp_path / "m.json")
    assert info["selected"] == 2 and info["labeller_steps"] == 4
    # a best member whose path is broken from its first image gives no start, and says so
    broken = path.subset(np.arange(11))
    broken.extras["intact"] = np.zeros(11)
    write_frames(tmp_path / "broken.h5", broken)
    out = select_step(uq, reps, sel, 1000, 2, tmp_path / "none", cogef_paths=[tmp_path / "path.h5"], smd=False,
                      descent_files={**files, "path": tmp_path / "broken.h5"})
    assert out["sources"] == {"cogef": 4} and out["descent"]["starts"] == 0 and out["descent"]["extensions"] == []
    # without the model's files the selection is the plain one
    plain = select_step(uq, reps, sel, 1000, 2, tmp_path / "plain", cogef_paths=[tmp_path / "path.h5"], smd=False)
    assert plain["sources"] == {"cogef": 4} and "descent" not in plain
