"""The workflow end to end on a tiny campaign (butane, small networks, 2 iterations).

These run Snakemake as a user does (a subprocess in a fresh directory) and check
the files of every stage, kill -9 and resume, raising max_iterations, dry-runs
and bad configs.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SNAKEMAKE, TINY, jobs_run, snakemake, write_config
from rarelearn.dataset import read_frames

pytestmark = pytest.mark.slow


def test_dry_run_shows_plan_up_to_first_checkpoint(tmp_path):
    res = snakemake(tmp_path, "-n")
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    counts = jobs_run(out)
    # reference stage, training of every member, SMD of every replica (the potential's as one
    # batched job, smd.batch's default), UQ and the selection checkpoint
    assert counts["reference_smd"] == 2
    assert counts["train"] == 2
    assert counts["smd_batch"] == 1 and "smd" not in counts
    for rule in ("reference_molecule", "reference_md", "reference_barrier", "best_model", "uq", "select"):
        assert counts[rule] == 1, rule
    assert "checkpoint" in out
    dag = snakemake(tmp_path, "--dag")
    assert dag.returncode == 0 and "digraph" in dag.stdout
    # smd.batch false: one job per replica instead, making the same files
    one_each = snakemake(tmp_path, "-n", configfile=write_config(tmp_path / "one_each.yaml", **{"smd.batch": False}))
    assert one_each.returncode == 0, one_each.stderr[-3000:]
    counts = jobs_run(one_each.stdout + one_each.stderr)
    assert counts["smd"] == 2 and "smd_batch" not in counts and counts["reference_smd"] == 2


def test_start_from_feeds_iteration_0s_training(tmp_path):
    """training.start_from: iteration 0's training jobs read the other campaign's iteration
    folder (best.json, each member's files), so its members start from that committee."""
    start = tmp_path / "hexane" / "results" / "iter_002"
    (start / "models").mkdir(parents=True)
    (start / "best.json").write_text("{}")
    for k in (0, 1):
        for ext in ("pt", "json"):
            (start / "models" / f"member_{k}.{ext}").write_text("")
    wd = tmp_path / "run"
    wd.mkdir()
    res = snakemake(wd, "-n", configfile=write_config(tmp_path / "start.yaml", **{"training.start_from": str(start),
                                                                        "training.warm_start": True}))
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert jobs_run(out)["train"] == 2
    for name in ("best.json", "models/member_0.pt", "models/member_1.json"):
        assert f"{start}/{name}" in out, name


def test_every_stage_writes_its_files(campaign):
    r = campaign / "results"
    ref = json.loads((r / "reference" / "barrier.json").read_text())
    assert ref["n_replicas"] == 2 and ref["ea_mean"] > 0 and np.isfinite(ref["ea_stderr"])
    md = read_frames(r / "reference" / "md.h5")
    assert len(md) == 100 and md.ok.all()
    for i in (0, 1):
        it = r / f"iter_{i:03d}"
        for k in (0, 1):
            assert (it / "models" / f"member_{k}.pt").stat().st_size > 0
            info = json.loads((it / "models" / f"member_{k}.json").read_text())
            assert set(info["train_hashes"]).isdisjoint(info["val_hashes"])
        best = json.loads((it / "best.json").read_text())
        assert best["best_member"] in (0, 1)
        for rep in ("00", "01"):
            smd = read_frames(it / "smd" / f"replica_{rep}.h5")
            assert len(smd) > 0 and "work" in smd.extras
            assert smd.attrs["batch_size"] == 2 and smd.attrs["batch_index"] == int(rep)
        sel = json.loads((it / "selected" / "selection.json").read_text())
        batches = sorted((it / "selected").glob("batch_*.h5"))
        assert len(batches) == sel["batches"]
        assert len(list((it / "labelled").glob("batch_*.h5"))) == sel["batches"]
        merge = json.loads((it / "merge.json").read_text())
        merged = read_frames(it / "merged.h5")
        # counted from the files themselves: the data set trained on plus the new, usable,
        # not yet known labelled frames
        base = read_frames(it / "dataset.h5" if i == 0 else r / f"iter_{i - 1:03d}" / "merged.h5")
        labelled = [read_frames(b) for b in sorted((it / "labelled").glob("batch_*.h5"))]
        new = {h for fr in labelled for h, ok in zip(fr.hashes, fr.ok) if ok} - set(base.hashes)
        assert set(merged.hashes) == set(base.hashes) | new and len(merged) == len(base) + len(new)
        assert merge["previous_frames"] == len(base) and merge["added"] == len(new)
        assert merge["total_frames"] == len(merged)
        assert merged.ok.all()
        ev = json.loads((it / "evaluation.json").read_text())
        # a barrier, or (a potential whose every replica blew up or stayed whole) the reason why
        assert ev["iteration"] == i and (np.isfinite(ev["abs_delta_ea_kcal"]) or ev["no_barrier_reason"])
        assert ev["frames_added"] == merge["added"]
        # which bond the pulls broke against the reference's, counted from the replica records
        ref = json.loads((r / "reference" / "barrier.json").read_text())
        broke = [rec for rec in ev["nnp_replica_records"] if rec["broke"]]
        if broke and any(rec["broke"] for rec in ref["replica_records"]):
            assert 0.0 <= ev["smd_same_bond_fraction"] <= 1.0
            assert ev["smd_same_bond_replicas"] == round(ev["smd_same_bond_fraction"] * len(broke))
            assert all(rec["broken_label"] in ev["nnp_smd_bonds"] for rec in broke)
    # iteration 1 trains on what iteration 0 merged
    prev = read_frames(r / "iter_000" / "merged.h5")
    info = json.loads((r / "iter_001" / "models" / "member_0.json").read_text())
    assert len(info["train_hashes"]) + len(info["val_hashes"]) == len(prev)
    summary = pd.read_csv(r / "summary.csv")
    assert list(summary["iteration"]) == [0, 1]
    for col in ("unseen_energy_mae", "labels_total", "nnp_unbroken", "nnp_cogef_e_max", "ref_smd_bonds"):
        assert summary[col].notna().all(), col
    assert (summary["cogef_abs_delta_e_max_kcal"].notna() | ~summary["nnp_cogef_broke"].astype(bool)).all()
    assert (summary["abs_delta_ea_kcal"].notna() | summary["no_barrier_reason"].notna()).all()
    # logs for every job
    assert (campaign / "logs" / "iter_001" / "train_1.log").read_text().strip()


def test_rerun_does_nothing_and_raising_max_iterations_runs_only_new(campaign, tmp_path):
    wd = tmp_path / "c"
    shutil.copytree(campaign, wd, symlinks=True)
    res = snakemake(wd, "-n")
    assert res.returncode == 0
    assert "Nothing to be done" in res.stdout + res.stderr
    cfg = write_config(tmp_path / "more.yaml", **{"campaign.max_iterations": 3})
    before = {p: p.stat().st_mtime for p in (wd / "results").rglob("*") if p.is_file()}
    res = snakemake(wd, configfile=cfg)
    assert res.returncode == 0, res.stderr[-4000:]
    counts = jobs_run(res.stdout + res.stderr)
    assert "reference_smd" not in counts and "reference_md" not in counts
    assert counts.get("train", 0) == 2  # only iteration 2's members
    assert (wd / "results" / "iter_002" / "evaluation.json").exists()
    changed = {p.relative_to(wd / "results") for p, m in before.items() if p.exists() and p.stat().st_mtime != m}
    # only the campaign-wide summary, its figures and the potential are rebuilt; nothing of
    # iterations 0-1
    assert changed and all(str(p) == "summary.csv" or str(p).startswith(("figures/", "potential/"))
                           for p in changed), changed
    assert json.loads((wd / "results" / "potential" / "card.json").read_text())["iteration"]["final"] == 2


def test_fused_training_trains_the_same_members(campaign, tmp_path):
    """training.fused: one job trains every member of an iteration; the members equal the
    per-member jobs' (same seeds, splits), up to floating-point summation order."""
    import torch

    wd = tmp_path / "c"
    shutil.copytree(campaign, wd, symlinks=True)
    shutil.rmtree(wd / "results" / "iter_000" / "models")
    cfg = write_config(tmp_path / "fused.yaml", **{"training.fused": True})
    res = snakemake(wd, "results/iter_000/best.json", configfile=cfg)
    assert res.returncode == 0, res.stderr[-4000:]
    counts = jobs_run(res.stdout + res.stderr)
    assert counts.get("train_fused") == 1 and "train" not in counts
    assert (wd / "logs" / "iter_000" / "train_fused.log").read_text().strip()
    for k in (0, 1):
        name = Path("results") / "iter_000" / "models" / f"member_{k}"
        fused, single = (json.loads((d / name.with_suffix(".json")).read_text()) for d in (wd, campaign))
        assert fused["train_hashes"] == single["train_hashes"] and fused["seed"] == single["seed"]
        a = torch.load(wd / name.with_suffix(".pt"), weights_only=True)["members"][0]
        b = torch.load(campaign / name.with_suffix(".pt"), weights_only=True)["members"][0]
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("override, culprit", [
    ({"training.epoch": 3}, "training.epoch"),
    ({"model.members": "three"}, "model.members"),
    ({"model.members": -1}, "model.members"),
    ({"labeller.name": "dft-magic"}, "labeller.name"),
    ({"molecule.structure": "missing.xyz", "molecule.pull": [[0], [1]]}, "molecule.structure"),
    # issue 18: what a new user got wrong
    ({"model.members": 2.5}, "model.members"),
    ({"molecule.elements": ["H", "C", "H"]}, "molecule.elements"),
    ({"labeller.options": {"electronic_temperature": "hot"}}, "labeller.options.electronic_temperature"),
    ({"evaluation.mae_replicas": 3}, "evaluation.mae_replicas"),
    ({"labelling.min_distance": -0.5}, "labelling.min_distance"),
])
def test_bad_config_stops_at_load(tmp_path, override, culprit):
    cfg = write_config(tmp_path / "bad.yaml", **override)
    res = snakemake(tmp_path, "-n", configfile=cfg)
    assert res.returncode != 0
    err = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("config error:")]
    assert len(err) == 1 and culprit in err[0], res.stdout + res.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("overrides", [
    {"model.family": "schnet", "training.lr": 0.0005},
    {"sampler.kind": "smd+hal", "sampler.tau_rel": 0.1, "sampler.window": 20},
], ids=["schnet", "smd+hal"])
def test_other_model_family_and_sampler_run_end_to_end(campaign, tmp_path, overrides):
    """SchNet (issue 10) and the HAL-biased pull (issue 9) through the same DAG; the
    reference stage of the finished campaign is reused, everything after it is redone.
    With smd+hal the biased pulls are their own files, scored and selected; the evaluation
    still measures the best member's own pulls, which the plain campaign already made."""
    wd = tmp_path / "c"
    shutil.copytree(campaign, wd, symlinks=True)
    cfg = write_config(tmp_path / "variant.yaml", **{"campaign.max_iterations": 1, **overrides})
    ref_before = (wd / "results" / "reference" / "barrier.json").stat().st_mtime
    plain_ev = json.loads((wd / "results" / "iter_000" / "evaluation.json").read_text())
    res = snakemake(wd, configfile=cfg)
    assert res.returncode == 0, res.stderr[-4000:]
    counts = jobs_run(res.stdout + res.stderr)
    assert "reference_smd" not in counts
    assert (wd / "results" / "reference" / "barrier.json").stat().st_mtime == ref_before
    ev = json.loads((wd / "results" / "iter_000" / "evaluation.json").read_text())
    assert "bond_report" in ev and len(ev["bond_report"]) == 2
    it0 = wd / "results" / "iter_000"
    smd = read_frames(it0 / "smd" / "replica_00.h5")
    assert not smd.attrs["driver"].startswith("HAL")
    if "model.family" in overrides:
        import torch

        # a new model family retrains and pulls again
        assert counts["train"] == 2 and counts["smd_batch"] == 1 and "smd_hal" not in counts
        blob = torch.load(it0 / "ensemble.pt", weights_only=True)
        assert blob["format"] == "rarelearn-schnet"
    else:
        # a new sampler reuses the members and their plain pulls, and adds the biased ones
        assert "train" not in counts and "smd_batch" not in counts and counts["smd_hal"] == 2
        biased = read_frames(it0 / "smd_hal" / "replica_00.h5")
        assert biased.attrs["driver"].startswith("HAL-biased committee")
        assert not np.allclose(biased.positions[-1], smd.positions[-1], atol=1e-3)
        # the barrier is the potential's own, the same as the plain campaign measured
        # (NaN on both sides when no replica of the tiny iteration 0 broke: then the same replicas,
        # stopped for the same reasons)
        assert ev["nnp_ea_mean"] == pytest.approx(plain_ev["nnp_ea_mean"], rel=1e-9, nan_ok=True)
        assert [(r["replica"], r["n_frames"], r["broke"], r["stop_reason"]) for r in ev["nnp_replica_records"]] == [
            (r["replica"], r["n_frames"], r["broke"], r["stop_reason"]) for r in plain_ev["nnp_replica_records"]]
        # ... while the frames scored and selected are the biased pulls'
        with h5py.File(it0 / "uq.h5", "r") as h5:
            assert h5.attrs["pulls"] == "smd_hal"
        sel = json.loads((it0 / "selected" / "selection.json").read_text())
        assert [r["file"] for r in sel["replicas"]] == [f"results/iter_000/smd_hal/replica_{r:02d}.h5"
                                                        for r in range(2)]
        for r in sel["replicas"]:
            if r["kept"]:
                pulled = read_frames(wd / r["file"])
                kept = read_frames(it0 / "selected" / "batch_0000.h5")
                assert np.array_equal(kept.positions[0], pulled.positions[r["indices"][0]])
                break


def test_summary_columns_match_evaluations_and_report_builds(campaign, tmp_path):
    r = campaign / "results"
    summary = pd.read_csv(r / "summary.csv")
    for col in ("nnp_ea_mean", "nnp_ea_stderr", "nnp_n_replicas", "ref_ea_mean", "ref_ea_stderr",
                "abs_delta_ea_kcal", "delta_ea_stderr_kcal", "nnp_break_distance_mean", "unseen_energy_mae",
                "unseen_force_mae", "mean_train_energy_mae", "mean_val_energy_mae", "member0_val_energy_mae",
                "frames_selected", "frames_augmented", "labels_failed", "labels_total", "wall_seconds",
                "label_seconds"):
        assert col in summary.columns, col
    for _, row in summary.iterrows():
        ev = json.loads((r / f"iter_{int(row.iteration):03d}" / "evaluation.json").read_text())
        for col in ("ref_ea_mean", "delta_ea", "unseen_energy_mae", "frames_selected", "frames_augmented"):
            if ev[col] is None or (isinstance(ev[col], float) and np.isnan(ev[col])):
                assert np.isnan(row[col])
            else:
                assert row[col] == pytest.approx(ev[col]), col
    md = read_frames(r / "reference" / "md.h5")
    added = summary.frames_selected + summary.frames_augmented
    assert list(summary.labels_total) == list(len(md) + added.cumsum())
    for fig in ("work_curves", "barrier_error", "mae", "parity", "uq", "label_efficiency", "ea_distributions",
                "cogef_profiles"):
        png = r / "figures" / f"{fig}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, fig
    wd = tmp_path / "c"
    shutil.copytree(campaign, wd, symlinks=True)
    res = snakemake(wd, "--report", "report.html")
    assert res.returncode == 0, res.stderr[-3000:]
    html = (wd / "report.html").read_text(errors="replace")
    assert "barrier_error.png" in html
    # the report opens with the model card
    assert "The potential: model card" in html and "Barrier error, COGEF" in html


def test_the_potential_is_delivered_with_its_card(campaign):
    """results/potential/ after the campaign: the chosen iteration's committee, TorchScript,
    and a card whose figures are the campaign's own results."""
    import hashlib

    import torch

    from rarelearn import load_potential
    from rarelearn.chem.molecules import load_prepared_molecule
    from rarelearn.potential import choose_iteration

    r = campaign / "results"
    pot = r / "potential"
    card = json.loads((pot / "card.json").read_text())
    evs = [json.loads((r / f"iter_{i:03d}" / "evaluation.json").read_text()) for i in (0, 1)]
    choice = choose_iteration(evs, {})  # tiny.yaml: stop rule off, observable both
    i = card["iteration"]["chosen"]
    assert i == choice["iteration"] and card["iteration"]["rule"] == "best" and card["iteration"]["final"] == 1
    it = r / f"iter_{i:03d}"
    assert (pot / "ensemble.pt").read_bytes() == (it / "ensemble.pt").read_bytes()
    for name, f in card["files"].items():
        assert hashlib.sha256((pot / name).read_bytes()).hexdigest() == f["sha256"], name
    assert card["model"]["best_member"] == json.loads((it / "best.json").read_text())["best_member"]
    assert card["elements"] == ["H", "C"] and card["labeller"]["name"] == "gfn2-xtb"
    # figures from the chosen iteration's evaluation
    ev = evs[i]
    err = card["errors"]
    for key, src in (("smd_abs_delta_ea_kcal", "abs_delta_ea_kcal"), ("cogef_abs_delta_e_max_kcal",
                     "cogef_abs_delta_e_max_kcal"), ("unseen_energy_mae_eV", "unseen_energy_mae"),
                     ("unseen_force_mae_eV_per_A", "unseen_force_mae")):
        if ev[src] is None or not np.isfinite(ev[src]):
            assert err[key] is None, key
        else:
            assert err[key] == pytest.approx(ev[src]), key
    assert err["unseen_frames"] == ev["unseen_frames"] > 0
    # the data set it was trained on, by source and iteration
    data = read_frames(r / "iter_000" / "dataset.h5" if i == 0 else r / f"iter_{i - 1:03d}" / "merged.h5")
    assert card["dataset"]["frames"] == int(data.ok.sum()) == sum(card["dataset"]["by_source"].values())
    assert card["dataset"]["by_source"]["md"] == 100 and card["dataset"]["by_iteration"]["-1"] == 100
    # the UQ threshold the campaign ended with: the last iteration's, mean over replicas
    with h5py.File(r / "iter_001" / "uq.h5") as h5:
        thr = [float(g.attrs["threshold"]) for g in h5.values()]
    assert card["uncertainty"]["uq_threshold_eV"] == pytest.approx(np.mean([t for t in thr if np.isfinite(t)]))
    tr = card["trained_range"]
    assert tr["bond_lengths"]["C-C"]["min"] < 1.6 < tr["bond_lengths"]["C-C"]["max"]
    assert tr["energy"]["min"] < tr["energy"]["max"] and tr["energy_std"]["max"] > 0
    assert "Barrier error, SMD" in (pot / "card.md").read_text()
    # usable: the ASE calculator and the TorchScript file agree on the molecule
    atoms, _, _ = load_prepared_molecule(r / "reference" / "molecule.xyz")
    atoms.calc = load_potential(pot)
    e = atoms.get_potential_energy()
    assert np.isfinite(e) and atoms.calc.results["energy_std"] >= 0 and "force_std" in atoms.calc.results
    ts = torch.jit.load(str(pot / "potential.ts"))
    e_ts, f_ts = ts.energy_forces(torch.as_tensor(atoms.numbers), torch.as_tensor(atoms.positions))
    assert abs(float(e_ts[0]) - e) < 1e-6 and np.abs(f_ts[0].numpy() - atoms.get_forces()).max() < 1e-6


def test_barrier_is_read_up_to_the_break_and_cogef_is_compared(campaign):
    """Every reported E_a is max W before the replica's break, unbroken replicas have none,
    and the reference's and every iteration's COGEF profiles are in the evaluation."""
    r = campaign / "results"
    ref = json.loads((r / "reference" / "barrier.json").read_text())
    assert ref["unbroken"] == 0 and set(ref["per_bond"]) and sum(b["n"] for b in ref["per_bond"].values()) == 2
    ref_cogef = json.loads((r / "reference" / "cogef.json").read_text())
    assert ref_cogef["broke"] and ref_cogef["e_max"] > 1.0 and ref_cogef["refinement"]
    ref_frames = read_frames(r / "reference" / "cogef.h5")
    assert ref_frames.ok.all() and len(ref_frames) == ref_cogef["n_images"]
    summary = pd.read_csv(r / "summary.csv")
    for i in (0, 1):
        it = r / f"iter_{i:03d}"
        ev = json.loads((it / "evaluation.json").read_text())
        for rec in ev["nnp_replica_records"]:
            fr = read_frames(it / "smd" / f"{rec['replica']}.h5")
            if rec["broke"]:
                b = rec["break_frame"]
                assert rec["ea"] == pytest.approx(fr.extras["work"][:b].max())
                assert rec["post_break_work"] == pytest.approx(fr.extras["work"][-1] - fr.extras["work"][b])
            else:
                assert rec["ea"] is None or np.isnan(rec["ea"])
        assert ev["nnp_n_replicas"] == sum(rec["broke"] for rec in ev["nnp_replica_records"])
        if ev["nnp_n_replicas"] == 0:
            # no barrier: said why, and no finite error beside a NaN difference
            assert ev["no_barrier_reason"] and np.isnan(ev["delta_ea_stderr_kcal"])
        cogef = json.loads((it / "cogef.json").read_text())
        best = json.loads((it / "best.json").read_text())["best_member"]
        assert len(cogef["uq_sigma"]) == cogef["n_images"] and cogef["driver"] == f"nnp member {best}"
        # every member's profile (evaluation.cogef_members: all); the best one's is cogef.json
        members = [json.loads((it / "cogef" / f"member_{k}.json").read_text()) for k in (0, 1)]
        assert [m["member"] for m in members] == [0, 1] and members[best] == cogef
        assert read_frames(it / "cogef" / f"member_{best}.h5").hashes.tolist() == \
            read_frames(it / "cogef.h5").hashes.tolist()
        assert [r["e_max"] for r in ev["cogef_members"]] == [m["e_max"] for m in members]
        assert ev["cogef_members_broke"] == sum(m["broke"] for m in members)
        if all(m["broke"] for m in members):
            assert ev["cogef_members_worst_abs_delta_kcal"] == pytest.approx(
                max(abs(m["e_max"] - ref_cogef["e_max"]) for m in members) * 23.0605, rel=1e-4)
        else:
            assert np.isnan(ev["cogef_members_worst_abs_delta_kcal"])
        assert ev["nnp_cogef_e_max"] == cogef["e_max"] and ev["ref_cogef_e_max"] == ref_cogef["e_max"]
        if cogef["broke"]:
            assert ev["cogef_abs_delta_e_max_kcal"] == pytest.approx(
                abs(cogef["e_max"] - ref_cogef["e_max"]) * 23.0605, rel=1e-4)
        assert np.isfinite(ev["cogef_frames_energy_mae"])
        row = summary[summary.iteration == i].iloc[0]
        assert row.nnp_unbroken == ev["nnp_unbroken"]
        assert row.nnp_cogef_e_max == pytest.approx(cogef["e_max"])


def test_stop_rule_ends_the_campaign_early(campaign, tmp_path):
    """campaign.stop on: with a COGEF tolerance that an iteration meets, the campaign ends
    after it (nothing of the next iteration is planned), and an iteration whose COGEF profile
    breaks another bond than the reference's never meets it, whatever its ΔE_max (the tiny
    campaign's iteration-0 potential breaks a C–H bond); with a tolerance no iteration meets,
    the next iteration is planned; with every member's profile (the default) the tolerance
    must hold for every member."""
    wd = tmp_path / "c"
    shutil.copytree(campaign, wd, symlinks=True)
    evs = [json.loads((wd / "results" / f"iter_{i:03d}" / "evaluation.json").read_text()) for i in (0, 1)]
    right = [i for i, ev in enumerate(evs)
             if ev["cogef_same_bond"] and np.isfinite(ev["cogef_abs_delta_e_max_kcal"])]
    assert right, [(ev["nnp_cogef_broken_label"], ev["ref_cogef_broken_label"]) for ev in evs]
    k = right[0]
    # every iteration up to k within the tolerance: only the bond keeps one before k from meeting it
    loose = max(ev["cogef_abs_delta_e_max_kcal"] for ev in evs[:k + 1]
                if np.isfinite(ev["cogef_abs_delta_e_max_kcal"])) + 1.0
    stop = {"enabled": True, "observable": "cogef", "cogef_target_kcal": loose}
    longer = {"campaign.max_iterations": k + 2}
    # the best member's profile only: its ΔE_max is within the tolerance
    best_only = write_config(tmp_path / "stop.yaml", **{"campaign.stop": stop, "evaluation.cogef_members": "best",
                                                        **longer})
    res = snakemake(wd, configfile=best_only)
    assert res.returncode == 0, res.stderr[-4000:]
    counts = jobs_run(res.stdout + res.stderr)
    assert "train" not in counts and "member_cogef" not in counts
    assert len(pd.read_csv(wd / "results" / "summary.csv")) == k + 1
    assert not (wd / "results" / f"iter_{k + 1:03d}").exists()
    tight = write_config(tmp_path / "tight.yaml", **{"campaign.stop": {**stop, "observable": "both"},
                                                     "evaluation.cogef_members": "best", **longer})
    res = snakemake(wd, "-n", configfile=tight)   # SMD side not met: iteration k + 1 is planned
    assert res.returncode == 0 and jobs_run(res.stdout + res.stderr).get("train") == 2
    # every member's (the default): met only if every member broke within the tolerance
    every = write_config(tmp_path / "every.yaml", **{"campaign.stop": stop, **longer})
    members = evs[k]["cogef_members"]
    met = all(m["broke"] and abs(m["delta_e_max_kcal"]) < loose for m in members)
    res = snakemake(wd, f"results/iter_{k:03d}/evaluation.json", configfile=every)  # evaluated with the members
    assert res.returncode == 0, res.stderr[-4000:]
    res = snakemake(wd, "-n", configfile=every)
    assert res.returncode == 0 and ("train" in jobs_run(res.stdout + res.stderr)) is not met


def test_close_iterations_read_their_barrier_from_more_replicas(campaign, tmp_path):
    """evaluation.close_replicas: an iteration whose COGEF profile breaks the reference's bond
    within close_kcal runs the pulls past reference.replicas (seeds numbered on, one more
    job) and reads its barrier from all of them; one that breaks another bond keeps
    reference.replicas (the tiny campaign's iteration-0 potential breaks a C–H bond)."""
    wd = tmp_path / "c"
    shutil.copytree(campaign, wd, symlinks=True)
    evs = [json.loads((wd / "results" / f"iter_{i:03d}" / "evaluation.json").read_text()) for i in (0, 1)]
    close = [bool(ev["cogef_same_bond"] and np.isfinite(ev["cogef_abs_delta_e_max_kcal"])) for ev in evs]
    assert any(close) and not all(close), [(ev["nnp_cogef_broken_label"], ev["ref_cogef_broken_label"]) for ev in evs]
    within = max(ev["cogef_abs_delta_e_max_kcal"] for ev, c in zip(evs, close) if c) + 1.0
    cfg = write_config(tmp_path / "close.yaml", **{"evaluation.close_replicas": 3, "evaluation.close_kcal": within})
    # iterations evaluated before the key was on: Snakemake does not redo them by itself, and says how
    res = snakemake(wd, "-n", configfile=cfg)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "Nothing to be done" in out, out[-3000:]
    assert "note: results/iter_001/evaluation.json was made before evaluation.close_replicas was on" in out
    assert "--forcerun evaluate" in out
    res = snakemake(wd, "--forcerun", "evaluate", configfile=cfg)
    assert res.returncode == 0, res.stderr[-4000:]
    log = res.stdout + res.stderr
    assert "note:" not in log
    ran = {r: log.count(f"checkpoint {r}:") + log.count(f"rule {r}:") for r in ("replica_plan", "smd_close", "train",
                                                                                  "smd_batch", "evaluate")}
    assert ran == {"replica_plan": 2, "smd_close": 1, "train": 0, "smd_batch": 0, "evaluate": 2}, ran
    for i, c in enumerate(close):
        it = wd / "results" / f"iter_{i:03d}"
        plan = json.loads((it / "replica_plan.json").read_text())
        assert plan["replicas"] == (3 if c else 2) and plan["close"] is c, plan
        assert (it / "smd" / "replica_02.h5").exists() is c
        ev = json.loads((it / "evaluation.json").read_text())
        if c:
            assert read_frames(it / "smd" / "replica_02.h5").attrs["seed"] == 1002
            assert ev["nnp_n_replicas"] + ev["nnp_unbroken"] + len(ev.get("nnp_failed_replicas") or []) == 3
        else:
            assert ev == evs[i] or ev["nnp_n_replicas"] == evs[i]["nnp_n_replicas"]
    again = snakemake(wd, "-n", configfile=cfg)
    assert "Nothing to be done" in again.stdout + again.stderr
    # the last evaluation made again by a campaign that goes on past it reads the plan there is
    # (met only inside a checkpoint update, an existing plan was not counted, and evaluate ran
    # with its pulls "<TBD>")
    last = wd / "results" / "iter_001" / "evaluation.json"
    last.unlink()
    longer = write_config(tmp_path / "longer.yaml", **{"evaluation.close_replicas": 3, "evaluation.close_kcal": within,
                                                      "campaign.max_iterations": 3})
    plan = snakemake(wd, "-n", configfile=longer)
    block = (plan.stdout + plan.stderr).split("checkpoint evaluate:")[1].split("output:")[0]
    assert plan.returncode == 0 and "<TBD>" not in block and "iter_001/smd/replica_01.h5" in block, block
    res = snakemake(wd, configfile=cfg)
    assert res.returncode == 0, res.stderr[-3000:]
    ev = json.loads(last.read_text())
    n_plan = json.loads((wd / "results" / "iter_001" / "replica_plan.json").read_text())["replicas"]
    assert ev["nnp_n_replicas"] + ev["nnp_unbroken"] + len(ev.get("nnp_failed_replicas") or []) == n_plan
    # the check knows the extra pulls a plan asked for, and its command remakes a lost one
    k = close.index(True)
    lost = wd / "results" / f"iter_{k:03d}" / "smd" / "replica_02.h5"
    lost.unlink()
    bad = subprocess.run([sys.executable, "-m", "rarelearn.check", "--configfile", str(cfg)], cwd=wd,
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert bad.returncode == 1 and f"results/iter_{k:03d}/smd/replica_02.h5: missing (rule smd)" in bad.stdout
    command = shlex.split(bad.stdout.splitlines()[-1])
    res = snakemake(wd, *command[3:], configfile=cfg)
    assert res.returncode == 0 and lost.exists(), res.stderr[-3000:]
    # the same holds for a reference barrier made before reference.target_stderr_kcal was set
    target = write_config(tmp_path / "target.yaml", **{"reference.target_stderr_kcal": 0.5})
    res = snakemake(wd, "-n", configfile=target)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "note: results/reference/barrier.json was made before reference.target_stderr_kcal" \
        in out and "--forcerun reference_barrier" in out, out[-3000:]


def test_a_reference_pull_that_breaks_nothing_stops_with_one_line(tmp_path):
    cfg = write_config(tmp_path / "short.yaml", **{"smd.pull_steps": 60})
    res = snakemake(tmp_path, "results/reference/barrier.json", configfile=cfg)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    line = next(ln for ln in out.splitlines() if ln.startswith("error: no reference SMD replica broke a bond"))
    assert "lengthen the pull (smd.pull_steps, or smd.velocity)" in line
    assert not (tmp_path / "results" / "reference" / "barrier.json").exists()


def test_an_adaptive_reference_runs_another_round_until_its_target_or_cap(tmp_path):
    """reference.target_stderr_kcal: a round of reference.replicas SMD replicas, then the
    reference_round checkpoint; a first round whose E_a standard error is above the target
    asks for a second (new seeds), up to max_replicas; barrier.json records the count. A
    looser target reruns only the decision and the barrier; a damaged decision is named."""
    cfg = write_config(tmp_path / "adaptive.yaml", **{"reference.target_stderr_kcal": 0.001,
                                                      "reference.max_replicas": 4})
    wd = tmp_path / "w"
    wd.mkdir()
    plan = snakemake(wd, "-n", configfile=cfg)      # planned up to the first decision
    assert plan.returncode == 0, plan.stderr[-3000:]
    counts = jobs_run(plan.stdout + plan.stderr)
    assert counts["reference_smd"] == 2 and counts["reference_round"] == 1 and counts["reference_barrier"] == 1
    res = snakemake(wd, "results/reference/barrier.json", configfile=cfg)
    assert res.returncode == 0, res.stderr[-4000:]
    ref = wd / "results" / "reference"
    first = json.loads((ref / "rounds" / "round_00.json").read_text())
    assert first["more"] and first["replicas_run"] == 2 and first["ea_stderr_kcal"] > 0.001
    assert not (ref / "rounds" / "round_01.json").exists()    # the cap's last round decides nothing
    seeds = [read_frames(ref / "smd" / f"replica_{k:02d}.h5").attrs["seed"] for k in range(4)]
    assert seeds == [1000, 1001, 1002, 1003]
    rec = json.loads((ref / "barrier.json").read_text())
    assert rec["replicas_run"] == 4 and len(rec["ea_values"]) == rec["n_replicas"] == 4
    assert rec["rounds"]["count"] == 2 and rec["rounds"]["reason"] == "max_replicas"
    assert rec["rounds"]["target_met"] is False
    assert rec["ea_stderr_kcal"] == pytest.approx(rec["ea_stderr"] * 23.0605, rel=1e-4)
    again = snakemake(wd, "-n", "results/reference/barrier.json", configfile=cfg)
    assert "Nothing to be done" in again.stdout + again.stderr
    # a target the first round meets: its decision and the barrier are redone, no replica
    loose = write_config(tmp_path / "loose.yaml", **{"reference.target_stderr_kcal": 1.0, "reference.max_replicas": 4})
    res = snakemake(wd, "results/reference/barrier.json", configfile=loose)
    assert res.returncode == 0, res.stderr[-4000:]
    assert jobs_run(res.stdout + res.stderr) == {"reference_round": 1, "reference_barrier": 1}
    rec = json.loads((ref / "barrier.json").read_text())
    assert rec["replicas_run"] == 2 and rec["rounds"]["count"] == 1 and rec["rounds"]["target_met"] is True
    # a damaged decision is not taken as made: one line naming it and the remake
    (ref / "rounds" / "round_00.json").write_text('{"round": 0, "more"')
    res = snakemake(wd, "-n", "results/reference/barrier.json", configfile=loose)
    assert res.returncode != 0
    line = next(ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("result error:"))
    assert "results/reference/rounds/round_00.json: not valid JSON" in line and "--forcerun" in line


# ---------------------------------------------------------------- issue 18: config through snakemake
def test_config_values_are_read_as_meant(tmp_path):
    """`members: 3.0`, `max_iterations: 2.0` and YAML 1.1's string '1e-3' load as 3, 2 and 0.001."""
    cfg = write_config(tmp_path / "meant.yaml", **{"model.members": 3.0, "campaign.max_iterations": 2.0,
                                                    "training.lr": "1e-3"})
    assert "lr: 1e-3" in cfg.read_text() or "lr: '1e-3'" in cfg.read_text()
    res = snakemake(tmp_path, "-n", configfile=cfg)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert jobs_run(res.stdout + res.stderr)["train"] == 3
    res = snakemake(tmp_path, "-n", "--config", "training={epochs: 5}", "model={members: 2}")
    assert res.returncode == 0, res.stderr[-2000:]
    assert jobs_run(res.stdout + res.stderr)["train"] == 2


@pytest.fixture()
def workflow_copy(tmp_path):
    """The workflow's own files in a folder of their own, so its config/config.yaml can be edited."""
    wf = tmp_path / "wf"
    wf.mkdir()
    shutil.copy(REPO / "Snakefile", wf)
    for d in ("workflow", "config", "profiles"):
        shutil.copytree(REPO / d, wf / d)
    work = tmp_path / "work"
    work.mkdir()
    return wf, work


def _snakemake_copy(wf, work, *args):
    cmd = [SNAKEMAKE, "-s", str(wf / "Snakefile"), "--cores", "1", "--nocolor", "-n", *args]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_configfile_is_layered_on_config_yaml(workflow_copy):
    """Item 7: a file holding only `molecule:` keeps the rest of config/config.yaml."""
    wf, work = workflow_copy
    base = wf / "config" / "config.yaml"
    base.write_text(base.read_text().replace("model:\n  members: 3", "model:\n  members: 4"))
    mine = work / "mine.yaml"
    mine.write_text("molecule:\n  alkane: 4\n")
    res = _snakemake_copy(wf, work, "--configfile", "mine.yaml")
    assert res.returncode == 0, res.stderr[-3000:]
    counts = jobs_run(res.stdout + res.stderr)
    assert counts["train"] == 4 and counts["reference_smd"] == 4  # config/config.yaml's members, replicas
    res = _snakemake_copy(wf, work, "--configfile", "mine.yaml", "--config", "model={members: 2}")
    assert jobs_run(res.stdout + res.stderr)["train"] == 2  # --config on top of the files


def test_broken_config_yaml_names_file_and_line(workflow_copy):
    """Item 6: a YAML syntax error in the config the workflow reads is one line with file and line."""
    wf, work = workflow_copy
    base = wf / "config" / "config.yaml"
    lines = base.read_text().splitlines()
    at = lines.index("model:") + 1
    lines[at] = "\tmembers: 3"  # a tab: YAML indents with spaces only
    base.write_text("\n".join(lines) + "\n")
    res = _snakemake_copy(wf, work)
    assert res.returncode != 0
    err = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("config error:")]
    assert len(err) == 1 and f"{base} line {at + 1} column 1" in err[0] and "not valid YAML" in err[0], \
        res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    assert not (work / "results").exists()


def test_editing_the_structure_file_reruns_the_reference_stage(tmp_path):
    """Item 8: the file named by molecule.structure is an input of reference_molecule."""
    from ase.build import molecule as build
    from ase.io import write

    atoms = build("C2H6")
    write(tmp_path / "ethane.xyz", atoms)
    cfg = write_config(tmp_path / "ethane.yaml", **{"molecule": {"structure": "ethane.xyz", "pull": [[0], [1]],
                                                                 "elements": ["H", "C"]}})
    target = "results/reference/molecule.xyz"
    res = snakemake(tmp_path, target, configfile=cfg)
    assert res.returncode == 0, res.stderr[-3000:]
    res = snakemake(tmp_path, target, "-n", configfile=cfg)
    assert "Nothing to be done" in res.stdout + res.stderr
    atoms.positions[2] += [0.05, 0.0, 0.0]
    write(tmp_path / "ethane.xyz", atoms)
    later = time.time() + 5
    os.utime(tmp_path / "ethane.xyz", (later, later))
    res = snakemake(tmp_path, target, "-n", configfile=cfg)
    assert res.returncode == 0, res.stderr[-3000:]
    assert jobs_run(res.stdout + res.stderr).get("reference_molecule") == 1
    assert "ethane.xyz" in res.stdout + res.stderr


def _check(wd):
    return subprocess.run([sys.executable, "-m", "rarelearn.check", "--configfile", str(TINY)], cwd=wd,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_check_repairs_a_damaged_campaign(campaign, tmp_path):
    """Item 10: deleted intermediate files are left missing by Snakemake ("Nothing to be done");
    the check names them and its command remakes them. A damaged evaluation.json stops the
    DAG with one line naming the file, and the same --forcerun remakes it."""
    wd = tmp_path / "c"
    shutil.copytree(campaign, wd, symlinks=True)
    ok = _check(wd)
    assert ok.returncode == 0 and "results ok" in ok.stdout, ok.stdout + ok.stderr
    it0, it1 = wd / "results" / "iter_000", wd / "results" / "iter_001"
    n_merged = json.loads((it0 / "merge.json").read_text())["total_frames"]
    (it0 / "merged.h5").unlink()
    for f in (it1 / "models").glob("member_0.*"):
        f.unlink()
    (it0 / "evaluation.json").write_text('{"iteration": 0,\n')
    res = snakemake(wd, "-n")
    lines = (res.stdout + res.stderr).splitlines()
    err = [line for line in lines if line.startswith("result error:")]
    assert len(err) == 1 and "results/iter_000/evaluation.json: not valid JSON" in err[0], lines[-20:]
    assert "--forcerun results/iter_000/evaluation.json" in err[0]
    bad = _check(wd)
    assert bad.returncode == 1
    out = bad.stdout.splitlines()
    assert "results/iter_000/merged.h5: missing (rule merge)" in out
    assert "results/iter_001/models/member_0.pt: missing (rule train)" in out
    assert any(line.startswith("results/iter_000/evaluation.json: not valid JSON") for line in out)
    command = shlex.split(out[-1])
    assert command[:3] == ["snakemake", "--cores", "2"] and "--forcerun" in command
    res = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--nocolor", *command[1:]], cwd=wd,
                         capture_output=True, text=True, timeout=900, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-4000:]
    counts = jobs_run(res.stdout + res.stderr)
    assert counts["merge"] >= 1 and counts["train"] >= 1 and "reference_md" not in counts
    assert len(read_frames(it0 / "merged.h5")) == n_merged
    assert (it1 / "models" / "member_0.pt").exists()
    assert json.loads((it0 / "evaluation.json").read_text())["iteration"] == 0
    again = _check(wd)
    assert again.returncode == 0, again.stdout
    done = snakemake(wd, "-n")
    assert "Nothing to be done" in done.stdout + done.stderr
