"""The potential deliverable (results/potential): the choice of iteration, the model card,
the ASE calculator's uncertainty outputs and warning, TorchScript in a fresh process, and
the command-line SMD. A tiny ethane committee built here stands in for a campaign's."""
import json
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
import torch

from rarelearn.dataset import Frames, read_frames, write_frames
from rarelearn.models.ani import make_spec
from rarelearn.models.committee import ModelError
from rarelearn.models.files import save_ensemble
from rarelearn.potential import (OutsideTrainedRange, PotentialCalculator, build_potential, choose_iteration,
                                 committee_spread, load_potential, potential_sources, read_card)
from rarelearn.learning.fit import TrainConfig, train_member
from rarelearn.learning.splits import random_split


def _ev(i, smd=None, cogef=None, mae=0.1):
    return {"iteration": i, "abs_delta_ea_kcal": smd, "delta_ea_stderr_kcal": 0.1 if smd is not None else None,
            "cogef_abs_delta_e_max_kcal": cogef, "unseen_energy_mae": mae}


# ------------------------------------------------------------------ which iteration
def test_choose_iteration_converged_best_and_fallback():
    stop = {"enabled": True, "observable": "cogef", "cogef_target_kcal": 1.0}
    evs = [_ev(0, 5.0, 3.0), _ev(1, 2.0, 0.5)]
    c = choose_iteration(evs, stop)
    assert c["iteration"] == 1 and c["rule"] == "converged"
    # not met: the smallest error of the observable, ties to the later iteration
    evs = [_ev(0, 5.0, 2.0), _ev(1, 2.0, 4.0), _ev(2, 9.0, 2.0)]
    c = choose_iteration(evs, stop)
    assert c["iteration"] == 2 and c["rule"] == "best"
    assert choose_iteration(evs, {"enabled": False, "observable": "smd"})["iteration"] == 1
    # both: the larger of the two errors over their tolerances; a missing figure ranks last
    both = {"observable": "both", "target_kcal": 1.0, "cogef_target_kcal": 4.0}
    evs = [_ev(0, 3.0, 4.0), _ev(1, 2.0, 16.0), _ev(2, None, 0.1)]
    c = choose_iteration(evs, both)
    assert c["iteration"] == 0 and c["scores"][2] is None
    # an iteration whose pulls break another bond than the reference's ranks after those that
    # break its bond, whatever its error; so does one whose COGEF profile does (cogef, both)
    evs = [_ev(0, 3.0, 4.0), {**_ev(1, 0.5, 1.0), "smd_same_bond_fraction": 0.25}, _ev(2, 3.5, 5.0)]
    c = choose_iteration(evs, both)
    assert c["iteration"] == 0 and "iterations 1 breaking another bond" in c["reason"]
    assert choose_iteration(evs, {"observable": "cogef"})["iteration"] == 1        # the pulls are not asked
    evs[0]["cogef_same_bond"] = False
    assert choose_iteration(evs, {"observable": "cogef"})["iteration"] == 1
    assert choose_iteration(evs, both)["iteration"] == 2
    # ... but before one without the figure
    assert choose_iteration([evs[1], _ev(2, None, 0.1)], both)["iteration"] == 1
    # no iteration has the figure: lowest unseen MAE
    evs = [_ev(0, mae=0.3), _ev(1, mae=0.2), _ev(2, mae=0.25)]
    c = choose_iteration(evs, both)
    assert c["iteration"] == 1 and c["rule"] == "lowest unseen MAE"
    with pytest.raises(ValueError):
        choose_iteration([], both)


def test_committee_spread():
    e = np.array([[1.0, 2.0], [3.0, 2.0]])
    f = np.zeros((2, 2, 3, 3))
    f[0, 0, 1] = [1.0, 0.0, 0.0]
    f[1, 0, 1] = [-1.0, 0.0, 0.0]
    es, fs = committee_spread(e, f)
    np.testing.assert_allclose(es, [1.0, 0.0])
    np.testing.assert_allclose(fs, [1.0, 0.0])


# ------------------------------------------------------------------ a tiny campaign's files
@pytest.fixture(scope="module")
def campaign_files(tmp_path_factory):
    """What a campaign leaves behind, for ethane: reference molecule, a labelled data set
    (GFN2-xTB, MD and AL frames), two iterations' committees, UQ files and evaluations."""
    from ase import Atoms
    from ase.build import molecule
    from ase.io import write
    from tblite.ase import TBLite

    root = tmp_path_factory.mktemp("results")
    atoms = molecule("C2H6")
    rng = np.random.default_rng(0)
    calc = TBLite(method="GFN2-xTB", verbosity=0)
    pos, e, f = [], [], []
    for k in range(80):
        probe = atoms.copy()
        probe.positions += rng.uniform(-0.08, 0.08, probe.positions.shape)
        if k >= 60:  # stretched C-C, as active learning would add
            probe.positions[[1, 5, 6, 7]] += [0.0, 0.0, -0.1 * (k - 59)]
        probe.calc = calc
        pos.append(probe.positions.copy())
        e.append(probe.get_potential_energy())
        f.append(probe.get_forces())
    src = np.array(["md"] * 60 + ["al"] * 20, dtype=object)
    it = np.array([-1] * 60 + [0] * 20)
    frames = Frames(numbers=atoms.numbers, positions=np.array(pos), energy=np.array(e), forces=np.array(f),
                    source=src, iteration=it, labeller="gfn2-xtb")
    self_e = {}
    for s in ("H", "C"):
        a = Atoms(s)
        a.calc = TBLite(method="GFN2-xTB", verbosity=0)
        self_e[s] = float(a.get_potential_energy())
    spec = make_spec(["H", "C"], {"H": [16, 8], "C": [16, 8]}, self_e)
    (root / "reference").mkdir()
    mol = atoms.copy()
    mol.info = {"name": "ethane", "pull1": "0", "pull2": "1"}
    write(root / "reference" / "molecule.xyz", mol, format="extxyz")
    # an adaptive reference: 12 replicas run in 3 rounds, 11 with a barrier, SE 0.92 kcal/mol
    (root / "reference" / "barrier.json").write_text(json.dumps({
        "ea_mean": 4.1, "ea_stderr": 0.04, "n_replicas": 11, "replicas_run": 12,
        "rounds": {"count": 3, "per_round": 4, "target_stderr_kcal": 1.0, "reason": "target_met"}}))
    (root / "reference" / "cogef.json").write_text(json.dumps({"e_max": 4.3, "broken_label": "C0-C1"}))
    md, merged = frames.subset(np.arange(60)), frames
    for i, data in ((0, md), (1, merged)):
        d = root / f"iter_{i:03d}"
        d.mkdir()
        write_frames(d / ("../iter_000/dataset.h5" if i == 0 else "../iter_000/merged.h5"), data)
        states = []
        for k in range(3):
            tr, va = random_split(len(data), seed=10 * i + k)
            st, _ = train_member(data, tr, va, spec, TrainConfig(epochs=40, batch_size=16, lr=3e-3, log_every=0,
                                                                 threads=1),
                                 seed=10 * i + k, log=lambda m: None)
            states.append(st)
        save_ensemble(d / "ensemble.pt", states, spec, meta={"iteration": i})
        (d / "best.json").write_text(json.dumps({"best_member": 1}))
        with h5py.File(d / "uq.h5", "w") as h5:
            for r, thr in (("replica_00", 0.02 + i), ("replica_01", 0.04 + i)):
                h5.create_group(r).attrs["threshold"] = thr
        ev = {"iteration": i, "abs_delta_ea_kcal": 3.0 - i, "delta_ea_kcal": -(3.0 - i), "delta_ea_stderr_kcal": 0.4,
              "nnp_n_replicas": 2, "nnp_unbroken": 0, "nnp_ea_mean": 4.0, "ref_ea_mean": 4.1,
              "cogef_abs_delta_e_max_kcal": 2.0 + i, "cogef_delta_e_max_kcal": 2.0 + i, "nnp_cogef_e_max": 4.4,
              "ref_cogef_e_max": 4.3, "unseen_frames": 50, "unseen_energy_mae": 0.05, "unseen_force_mae": 0.2,
              "no_barrier_reason": None,
              "cogef_members": [{"member": 0, "broke": True, "delta_e_max_kcal": 4.5 + i},
                                {"member": 1, "broke": True, "delta_e_max_kcal": 2.0 + i},
                                {"member": 2, "broke": False, "delta_e_max_kcal": float("nan")}],
              "cogef_members_worst_abs_delta_kcal": float("nan"),
              "nnp_smd_bonds": "C-C 1-2 ×2", "ref_smd_bonds": "C-C 0-1 ×1, C-C 2-3 ×1",
              "smd_same_bond_fraction": 0.0, "nnp_cogef_broken_label": "C-C 2-3",
              "ref_cogef_broken_label": "C-C 0-1", "cogef_same_bond": True}
        (d / "evaluation.json").write_text(json.dumps(ev))
    return root


@pytest.fixture(scope="module")
def potential_dir(campaign_files):
    root = campaign_files
    evs = [root / f"iter_{i:03d}" / "evaluation.json" for i in (0, 1)]
    stop = {"enabled": False, "observable": "smd"}
    src = potential_sources(evs, stop, results=str(root))
    assert src["ensemble"].endswith("iter_001/ensemble.pt") and src["data"].endswith("iter_000/merged.h5")
    out = root / "potential"
    build_potential(src["evaluations"], stop, src["ensemble"], src["best"], src["data"], src["uq"], src["final_uq"],
                    src["molecule"], {"name": "gfn2-xtb", "options": {"accuracy": 1.0}}, out,
                    smd_cfg={"relax_steps": 20, "pull_steps": 300, "timestep_fs": 0.5, "temperature_K": 10.0,
                             "spring_k": 10.0, "velocity": 10.0, "record_every": 5, "batch": True},
                    reference_barrier=src["reference_barrier"], reference_cogef=src["reference_cogef"])
    return out


def test_card_holds_the_campaigns_figures(potential_dir, campaign_files):
    card = read_card(potential_dir)
    for f in ("ensemble.pt", "potential.ts", "card.json", "card.md", "card.rst"):
        assert (potential_dir / f).stat().st_size > 0, f
    assert card["elements"] == ["H", "C"] and card["labeller"] == {"name": "gfn2-xtb", "options": {"accuracy": 1.0}}
    assert card["iteration"]["chosen"] == 1 and card["iteration"]["rule"] == "best"
    ds = card["dataset"]
    assert ds["frames"] == 80 and ds["by_source"] == {"md": 60, "al": 20} and ds["by_iteration"] == {"-1": 60, "0": 20}
    err = card["errors"]
    assert err["smd_abs_delta_ea_kcal"] == 2.0 and err["smd_delta_ea_stderr_kcal"] == 0.4
    assert err["cogef_abs_delta_e_max_kcal"] == 3.0 and err["unseen_energy_mae_eV"] == 0.05
    # every member's COGEF error, a member that never broke said so
    assert err["cogef_members_delta_e_max_kcal"] == [5.5, 3.0, None]
    assert err["cogef_members_worst_abs_delta_kcal"] is None
    unc = card["uncertainty"]
    assert unc["uq_threshold_eV"] == pytest.approx(1.03) and unc["uq_threshold_iteration"] == 1
    tr = card["trained_range"]
    assert tr["frames"] == 80 and set(tr["bond_lengths"]) == {"C-C", "C-H"}
    assert tr["bond_lengths"]["C-C"]["max"] > 2.5 and tr["pulled_distance"]["max"] > 2.5
    assert unc["warn_energy_std_above_eV"] == tr["energy_std"]["max"] > 0
    assert tr["energy"]["min"] < tr["energy"]["max"]
    import hashlib
    for name, f in card["files"].items():
        assert hashlib.sha256((potential_dir / name).read_bytes()).hexdigest() == f["sha256"]
    assert (potential_dir / "ensemble.pt").read_bytes() == (campaign_files / "iter_001" / "ensemble.pt").read_bytes()
    md = (potential_dir / "card.md").read_text()
    assert "every member: +5.5, +3.0, no break" in md
    # which bond the pulls and the scan break, against the reference's
    assert err["smd_same_bond_fraction"] == 0.0 and err["smd_bonds_potential"] == "C-C 1-2 ×2"
    assert ("| Bond broken | SMD: C-C 1-2 ×2 (reference C-C 0-1 ×1, C-C 2-3 ×1); the reference's bond in 0 % of "
            "the pulls; COGEF: C-C 2-3 (reference C-C 0-1): the same place along the load path |") in md
    assert "Barrier error, SMD" in md and "-2.00 ± 0.40 kcal/mol" in md and card["files"]["potential.ts"]["sha256"] in md
    # the reference's replica count, rounds and standard error (an adaptive reference)
    assert card["reference"]["smd_replicas_run"] == 12 and card["reference"]["smd_rounds"] == 3
    assert card["reference"]["smd_ea_stderr_kcal"] == pytest.approx(0.04 * 23.0605, rel=1e-4)
    assert ("| Reference barrier, SMD | E_a 4.100 eV, standard error 0.92 kcal/mol, from 11 replicas with a "
            "barrier (12 run in 3 round(s); target standard error 1 kcal/mol, target met) |") in md
    from docutils.core import publish_parts
    html = publish_parts((potential_dir / "card.rst").read_text(), writer="html",
                         settings_overrides={"halt_level": 2})["html_body"]
    assert "<table" in html and "Barrier error, COGEF" in html


def test_calculator_reports_spread_and_warns_once(potential_dir):
    from ase.build import molecule

    calc = load_potential(potential_dir)
    assert calc.member == 1 and calc.model.dtype == torch.float64
    atoms = molecule("C2H6")
    atoms.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # near equilibrium: no warning
        atoms.get_potential_energy()
    r = calc.results
    assert r["energies"].shape == (3,) and r["member_forces"].shape == (3, 8, 3)
    assert r["energy"] == pytest.approx(r["energies"][1])
    np.testing.assert_allclose(r["forces"], r["member_forces"][1])
    es, fs = committee_spread(r["energies"][:, None], r["member_forces"][:, None])
    assert r["energy_std"] == pytest.approx(es[0]) and r["force_std"] == pytest.approx(fs[0])
    assert r["forces_std"].shape == (8,) and not r["outside_trained_range"]
    far = atoms.copy()
    far.calc = calc
    far.positions *= 0.7  # squeezed: C-H 0.77 Å, never seen
    with pytest.warns(OutsideTrainedRange, match="outside the trained range"):
        far.get_potential_energy()
    assert calc.results["outside_trained_range"] and calc.frames_outside == 1
    far.positions[1, 2] -= 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        far.get_potential_energy()
    assert calc.frames_outside == 2
    mean = load_potential(potential_dir, member="mean", warn=False)
    atoms.calc = mean
    assert atoms.get_potential_energy() == pytest.approx(r["energies"].mean())
    import rarelearn  # the one-call entry point
    assert isinstance(rarelearn.load_potential(potential_dir), PotentialCalculator)


def test_hash_mismatch_is_refused(potential_dir, tmp_path):
    import shutil

    copy = tmp_path / "pot"
    shutil.copytree(potential_dir, copy)
    card = json.loads((copy / "card.json").read_text())
    card["files"]["ensemble.pt"]["sha256"] = "0" * 64
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="SHA-256"):
        load_potential(copy)


TS_CHILD = """
import json, sys, numpy as np, torch
assert 'rarelearn' not in sys.modules
m = torch.jit.load(sys.argv[1])
z = torch.as_tensor(np.load(sys.argv[2]))
x = torch.as_tensor(np.load(sys.argv[3]))
e, f = m.energy_forces(z, x)
k = m.member_energies(z, x)
bad = [n for n in sys.modules if n.startswith(('rarelearn', 'torchani'))]
json.dump({'e': e.tolist(), 'f': f.tolist(), 'k': k.tolist(), 'mods': bad}, open(sys.argv[4], 'w'))
"""


def test_torchscript_matches_the_calculator_in_a_fresh_process(potential_dir, tmp_path):
    from ase.build import molecule

    atoms = molecule("C2H6")
    rng = np.random.default_rng(5)
    pos = atoms.positions[None] + rng.uniform(-0.1, 0.1, (4, 8, 3))
    pos[3, [1, 5, 6, 7]] -= [0.0, 0.0, 1.0]
    np.save(tmp_path / "z.npy", atoms.numbers.astype(np.int64))
    np.save(tmp_path / "x.npy", pos)
    out = tmp_path / "ts.json"
    res = subprocess.run([sys.executable, "-c", TS_CHILD, str(potential_dir / "potential.ts"), str(tmp_path / "z.npy"),
                          str(tmp_path / "x.npy"), str(out)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["mods"] == []
    calc = load_potential(potential_dir, warn=False)
    e_ref, f_ref, k_ref = [], [], []
    for p in pos:
        a = atoms.copy()
        a.positions = p
        a.calc = calc
        e_ref.append(a.get_potential_energy())
        f_ref.append(a.get_forces())
        k_ref.append(calc.results["energies"])
    de = np.abs(np.array(got["e"]) - e_ref).max()
    df = np.abs(np.array(got["f"]) - np.array(f_ref)).max()
    print(f"TorchScript vs calculator: max |dE| {de:.2e} eV, max |dF| {df:.2e} eV/Å")
    assert de < 1e-6 and df < 1e-6
    np.testing.assert_allclose(np.array(got["k"]).T, np.array(k_ref), atol=1e-6, rtol=0)


def test_command_line_smd_on_ethane(potential_dir, tmp_path):
    from ase.build import molecule
    from ase.io import write

    write(tmp_path / "ethane.xyz", molecule("C2H6"))
    res = subprocess.run([sys.executable, "-m", "rarelearn.run", "smd", "--potential", str(potential_dir),
                          "--structure", "ethane.xyz", "--pull", "0", "1", "--steps", "200", "--relax-steps", "20",
                          "--out", "pull.h5", "--xyz", "pull.xyz"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("SMD of C2H6") and "10.0 Å/ps" in lines[0]  # the card's protocol
    assert lines[-1].startswith("SMD done") and "pull.h5" in lines[-1]
    assert len(lines) >= 4  # progress lines between
    fr = read_frames(tmp_path / "pull.h5")
    assert 0 < len(fr) <= 200 // 5 and fr.attrs["potential_iteration"] == 1
    for k in ("work", "spring_distance", "energy_std", "force_std", "outside_trained_range"):
        assert k in fr.extras and np.isfinite(fr.extras[k]).all(), k
    # the spring moved at the card's 10 Å/ps (the tiny committee may stop the run early: the
    # last line says why, and the run still writes what it recorded)
    ref = fr.extras["spring_reference"]
    assert len(fr) == 1 or ref[-1] - ref[0] == pytest.approx(10.0e-3 * 0.5 * 5 * (len(fr) - 1), rel=1e-6)
    assert fr.attrs["stop_reason"] in lines[-1]
    from ase.io import read
    assert len(read(tmp_path / "pull.xyz", index=":")) == len(fr)
    bad = subprocess.run([sys.executable, "-m", "rarelearn.run", "smd", "--potential", str(potential_dir),
                          "--structure", "ethane.xyz"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode == 2 and "--pull" in bad.stderr


def test_command_line_md(potential_dir, tmp_path):
    from ase.build import molecule
    from ase.io import write

    write(tmp_path / "ethane.xyz", molecule("C2H6"))
    res = subprocess.run([sys.executable, "-m", "rarelearn.run", "md", "--potential", str(potential_dir),
                          "--structure", "ethane.xyz", "--frames", "20", "--temperature", "100", "--member", "mean"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    fr = read_frames(tmp_path / "md.h5")
    assert len(fr) == 20 and fr.attrs["member"] == "mean" and "energy_std" in fr.extras


def test_schnet_committee_has_a_card_and_a_calculator_but_no_torchscript(campaign_files, tmp_path):
    """A SchNet campaign's potential: the same card and calculator; potential.ts says why it
    is not TorchScript, and the card lists no such file."""
    import shutil

    pytest.importorskip("torch_geometric")
    from rarelearn.models.files import save_model
    from rarelearn.models.schnet import build_schnet, make_schnet_spec

    root = tmp_path / "results"
    shutil.copytree(campaign_files, root, ignore=shutil.ignore_patterns("potential"))
    spec = {**make_schnet_spec(["H", "C"], {"H": -10.0, "C": -40.0}, hidden_channels=16, num_filters=16,
                               num_interactions=1, num_gaussians=8), "family": "schnet"}
    torch.manual_seed(0)
    save_model(root / "iter_001" / "ensemble.pt", [build_schnet(spec).state_dict() for _ in range(2)], spec)
    evs = [root / f"iter_{i:03d}" / "evaluation.json" for i in (0, 1)]
    src = potential_sources(evs, {"observable": "smd"}, results=str(root))
    card = build_potential(src["evaluations"], {"observable": "smd"}, src["ensemble"], src["best"], src["data"],
                           src["uq"], src["final_uq"], src["molecule"], {"name": "gfn2-xtb"}, root / "potential")
    assert card["model"]["family"] == "schnet" and not card["model"]["torchscript"]
    assert set(card["files"]) == {"ensemble.pt"}
    assert "no TorchScript export" in (root / "potential" / "potential.ts").read_text()
    from ase.build import molecule

    atoms = molecule("C2H6")
    atoms.calc = load_potential(root / "potential", member=0, warn=False)
    atoms.get_potential_energy()
    assert atoms.calc.results["energies"].shape == (2,) and atoms.calc.results["force_std"] >= 0


def test_a_family_is_judged_by_its_worst_trained_molecule():
    from rarelearn.potential import choose_family_iteration

    cogef = {"enabled": True, "observable": "cogef", "cogef_target_kcal": 1.0}
    histories = {
        "C2": [_ev(0, cogef=5.0), _ev(1, cogef=10.0), _ev(2, cogef=0.5)],
        "C3": [_ev(0, cogef=20.0), _ev(1, cogef=3.0), _ev(2, cogef=None)],
        "C8": [_ev(0, cogef=0.1), _ev(1, cogef=90.0), _ev(2, cogef=90.0)],  # held out: not looked at
    }
    c = choose_family_iteration(histories, ["C2", "C3"], cogef)
    # worst trained molecule: 20 (C3), 10 (C2), none (C3 lacks the figure)
    assert c["iteration"] == 1 and c["rule"] == "best" and c["scores"] == [20.0, 10.0, None]
    assert c["worst"] == ["C3", "C2", None] and "(C2: 10.00)" in c["reason"]
    # a molecule breaking another bond ranks its iteration after the others
    histories["C2"][1]["cogef_same_bond"] = False
    assert choose_family_iteration(histories, ["C2", "C3"], cogef)["iteration"] == 0
    # converged only when the stop rule holds for every trained molecule
    histories["C3"][2]["cogef_abs_delta_e_max_kcal"] = 0.9
    c = choose_family_iteration(histories, ["C2", "C3"], cogef)
    assert c["iteration"] == 2 and c["rule"] == "converged"
    histories["C3"][2]["cogef_abs_delta_e_max_kcal"] = 1.1
    assert choose_family_iteration(histories, ["C2", "C3"], cogef)["rule"] == "best"
    # no figure anywhere: the lowest mean unseen MAE over the trained molecules
    none = {"A": [_ev(0, mae=0.1), _ev(1, mae=0.3)], "B": [_ev(0, mae=0.5), _ev(1, mae=0.2)]}
    c = choose_family_iteration(none, ["A", "B"], cogef)
    assert c["iteration"] == 1 and c["rule"] == "lowest unseen MAE"
    with pytest.raises(ValueError):
        choose_family_iteration(histories, [], cogef)
