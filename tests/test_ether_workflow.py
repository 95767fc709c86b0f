"""A campaign on a user structure with oxygen, end to end through Snakemake (issue 20):
dimethyl ether from a structure file, elements H, C, O, pulled apart by its carbons so that a
C–O bond breaks. Its 5-epoch committee blows up in the relaxation of every SMD replica of
iteration 0, before the pull, as a user reported; the relaxation's frames must still be
labelled and learnt from, and the evaluation must say why there is no barrier."""
from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from ase.build import molecule
from ase.io import write

from conftest import REPO, snakemake
from rarelearn.dataset import read_frames

pytestmark = pytest.mark.slow

ETHER = REPO / "tests" / "configs" / "ether.yaml"
C_O = {"C-O 0-1", "O-C 1-2"}  # dimethyl ether C0 O1 C2: its only skeleton bonds


@pytest.fixture(scope="module")
def ether_campaign(tmp_path_factory):
    wd = tmp_path_factory.mktemp("ether")
    write(wd / "dme.xyz", molecule("CH3OCH3"))  # the user's file, read from the working directory
    t0 = time.time()
    res = snakemake(wd, configfile=ETHER)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-6000:]
    print(f"ether campaign took {time.time() - t0:.0f} s")
    return wd / "results"


def test_the_reference_breaks_a_c_o_bond(ether_campaign):
    r = ether_campaign
    energies = json.loads((r / "reference" / "atom_energies.json").read_text())["energies"]
    assert set(energies) == {"H", "C", "O"} and energies["O"] < energies["C"] < energies["H"] < 0
    ref = json.loads((r / "reference" / "barrier.json").read_text())
    assert ref["n_replicas"] == 2 and set(ref["per_bond"]) <= C_O and ref["ea_mean"] > 1.0
    assert all(rec["broken_elements"] in ("C-O", "O-C") for rec in ref["replica_records"])
    cogef = json.loads((r / "reference" / "cogef.json").read_text())
    assert cogef["broke"] and cogef["broken_label"] in C_O


def test_a_potential_that_blows_up_before_the_pull_is_learnt_from(ether_campaign):
    r = ether_campaign
    it = r / "iter_000"
    sel = json.loads((it / "selected" / "selection.json").read_text())
    relaxation_hashes = set()
    for k, rec in enumerate(sel["replicas"]):
        fr = read_frames(it / "smd" / f"replica_{k:02d}.h5")
        # the report's scenario: the replica blew up while relaxing, and kept those frames
        assert fr.attrs["phase"] == "relaxation" and fr.attrs["stop_reason"].startswith("during relaxation: ")
        assert len(fr) > 0 and (fr.extras["step"] <= 0).all()
        # every frame was a candidate; screened, and the frame before the blow-up forced in
        assert rec["pull_began"] is False and rec["candidates"] == len(fr) and rec["kept"] >= 2
        assert rec["blowup_frames"][0] in rec["indices"]
        relaxation_hashes |= set(fr.hashes)
    assert sel["selected"] == 12  # selection.max_frames: more were kept than the cap
    ev = json.loads((it / "evaluation.json").read_text())
    assert ev["nnp_n_replicas"] == 0 and np.isnan(ev["abs_delta_ea_kcal"]) and not ev["empty_selection"]
    assert ev["no_barrier_reason"].startswith("2 replica(s) stopped before the pull began (replica_00: during "
                                              "relaxation: ")
    # the bond report follows the C–O bonds (a C–C report would have none to follow)
    assert [b["stretched_label"] in C_O for b in ev["bond_report"]] == [True, True]
    # the relaxation frames were labelled, merged, and iteration 1 trained on them
    merged = read_frames(it / "merged.h5")
    new = merged.subset(np.flatnonzero(merged.source == "al"))
    assert len(new) > 0 and set(new.hashes) <= relaxation_hashes and new.ok.all()
    assert ev["frames_added"] == len(merged) - len(read_frames(it / "dataset.h5")) > 0
    info = json.loads((r / "iter_001" / "models" / "member_0.json").read_text())
    assert len(info["train_hashes"]) + len(info["val_hashes"]) == len(merged)
    summary = pd.read_csv(r / "summary.csv")
    assert list(summary["iteration"]) == [0, 1]
    row = summary[summary.iteration == 0].iloc[0]
    assert row.no_barrier_reason == ev["no_barrier_reason"] and row.frames_added > 0
    assert (summary["abs_delta_ea_kcal"].notna() | summary["no_barrier_reason"].notna()).all()


def test_the_potential_covers_oxygen(ether_campaign):
    card = json.loads((ether_campaign / "potential" / "card.json").read_text())
    assert card["elements"] == ["H", "C", "O"]
    assert card["model"]["spec"]["hidden"] == {"H": [16, 8], "C": [16, 8], "O": [16, 8]}
    assert (ether_campaign / "figures" / "uq.png").stat().st_size > 0
