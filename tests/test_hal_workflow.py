"""Sampler ``hal`` through Snakemake (issue 9): HAL runs stop when the committee disagrees,
and their stop frames are what gets labelled and merged; the SMD replicas still run for
the evaluation. Reuses the session's tiny campaign (conftest ``campaign``)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import jobs_run, snakemake, write_config
from rarelearn.dataset import read_frames

pytestmark = pytest.mark.slow

HAL = {"sampler.kind": "hal", "sampler.runs": 3, "sampler.max_steps": 300, "sampler.window": 20}


def test_hal_dry_run_plans_one_job_per_run(tmp_path):
    cfg = write_config(tmp_path / "hal.yaml", **HAL)
    res = snakemake(tmp_path, "-n", configfile=cfg)
    assert res.returncode == 0, res.stderr[-3000:]
    counts = jobs_run(res.stdout + res.stderr)
    assert counts["hal_run"] == 3 and counts["smd_batch"] == 1 and counts["select"] == 1


def test_hal_campaign_labels_and_merges_the_stop_frames(campaign, tmp_path):
    wd = tmp_path / "c"
    shutil.copytree(campaign, wd, symlinks=True)
    cfg = write_config(tmp_path / "hal.yaml", **{"campaign.max_iterations": 1, **HAL})
    res = snakemake(wd, configfile=cfg)
    assert res.returncode == 0, res.stderr[-4000:]
    counts = jobs_run(res.stdout + res.stderr)
    # the trained members and the SMD replicas (best member, as for smd) are reused
    assert counts["hal_run"] == 3
    assert "train" not in counts and "smd_batch" not in counts and "uq" not in counts
    it = wd / "results" / "iter_000"

    picks, fired = {}, 0
    for r in ("00", "01", "02"):
        run = read_frames(it / "hal" / f"run_{r}.h5")
        assert len(run) > 0 and (run.source == "hal").all()
        assert run.attrs["driver"].startswith("HAL-biased committee")
        if run.attrs["hal_fired"]:
            fired += 1
            # the run stopped on the criterion and kept the firing configuration as its last frame
            assert run.attrs["stop_reason"].startswith("HAL stop criterion fired")
            assert run.extras["step"][-1] == run.attrs["steps_done"] <= 300
            assert run.attrs["hal_pick"] == len(run) - 1
            assert run.extras["hal_score"][-1] > 0.5  # softmax criterion, s_tol 0.5
        else:
            assert run.attrs["hal_pick"] == int(np.nanargmax(run.extras["hal_score"]))
        picks[run.hashes[run.attrs["hal_pick"]]] = run.positions[run.attrs["hal_pick"]]
    assert fired >= 1  # the tiny iteration-0 committee disagrees within a few dozen steps

    sel = json.loads((it / "selected" / "selection.json").read_text())
    assert sel["sampler"] == "hal" and sel["selected"] == 3 and sel["fired"] == fired
    assert sel["augmented"] == 6
    labelled = [read_frames(p) for p in sorted((it / "labelled").glob("batch_*.h5"))[: sel["batches"]]]
    hal_labelled = {h for fr in labelled for h, s in zip(fr.hashes, fr.source) if s == "hal"}
    assert hal_labelled == set(picks)
    # labels of unphysical stop frames (the tiny committee's run into |F| of ~200 eV/Å) are
    # screened out of the merge (labelling.max_force), and counted
    status = {h: st for fr in labelled for h, st in zip(fr.hashes, fr.status)}
    usable = {h for h in picks if status[h] == "ok"}
    n_ok = sum(int((fr.status == "ok").sum()) for fr in labelled)
    merge = json.loads((it / "merge.json").read_text())
    assert merge["screened_labels"] == sum(int((fr.status == "screened").sum()) for fr in labelled)
    assert merge["screened_labels"] + merge["failed_labels"] + n_ok == 9
    merged = read_frames(it / "merged.h5")
    in_merge = merged.subset(merged.source == "hal")
    assert set(in_merge.hashes) == usable and (in_merge.iteration == 0).all()
    assert in_merge.ok.all() and (in_merge.labeller == "gfn2-xtb").all()
    # the labels are those of the stop configurations themselves (positions untouched)
    for h, pos in zip(in_merge.hashes, in_merge.positions):
        np.testing.assert_allclose(pos, picks[h], atol=1e-9)
    n_augment_ok = sum(int(((fr.status == "ok") & (fr.source == "augment")).sum()) for fr in labelled)
    assert int((merged.source == "augment").sum()) == n_augment_ok and int((merged.source == "al").sum()) == 0
    assert len(merged) == len(read_frames(it / "dataset.h5")) + n_ok
    assert np.linalg.norm(merged.forces, axis=2).max() <= 50.0
    ev = json.loads((it / "evaluation.json").read_text())
    assert ev["frames_selected"] == 3 and ev["frames_augmented"] == 6
    # every replica is accounted for: with a barrier (read up to its break), unbroken, or failed
    # before the pull; the tiny iteration 0 may have no barrier at all, and then says why
    assert ev["nnp_n_replicas"] + ev["nnp_unbroken"] + len(ev["nnp_failed_replicas"]) == 2
    assert np.isfinite(ev["abs_delta_ea_kcal"]) or ev["no_barrier_reason"]
