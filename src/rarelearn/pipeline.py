"""One function per workflow step: paths and config sections in, files out.

The Snakemake scripts in ``workflow/scripts`` are thin adapters onto these; every
step can also be called from Python (tests do). Every output is written atomically,
so a killed job leaves nothing that looks finished.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .dataset import STATUS_SCREENED, Frames, atomic_path, merge_frames, read_frames, remake_hint, write_frames
from .evaluation import barrier_record, delta_record
from .units import EV_PER_KCAL_MOL

__all__ = [
    "setup_logging",
    "ResultFileError",
    "write_json",
    "read_json",
    "prepare_molecule",
    "load_prepared_molecule",
    "reference_md",
    "smd_replica",
    "smd_batch_step",
    "reference_barrier",
    "cogef_step",
    "reference_cogef",
    "NoBreakError",
    "initial_dataset",
    "train_member_step",
    "best_model_step",
    "uq_step",
    "select_step",
    "hal_run",
    "hal_select_step",
    "label_step",
    "merge_step",
    "evaluate_step",
    "summary_step",
]

log = logging.getLogger("rarelearn")


# ------------------------------------------------------------------ plumbing
def setup_logging(path=None, threads: int | None = None) -> logging.Logger:
    """Send the package's log to ``path`` (and stderr); pin thread counts for the job."""
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        try:
            import torch

            torch.set_num_threads(int(threads))
        except ImportError:  # pragma: no cover
            pass
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        handlers=handlers, force=True)
    return log


def write_json(path, data) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1, default=_json_default)
    return path


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


class ResultFileError(ValueError):
    """A result file is missing or damaged; the message names it and what to do."""


def read_json(path) -> dict:
    """A JSON file, or a one-line :class:`ResultFileError` naming it and what to do."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ResultFileError(f"{path}: no such file; {remake_hint(path)}") from None
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{path}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}), "
                              f"truncated or corrupt; {remake_hint(path)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"{path}: cannot read it ({type(exc).__name__}: {exc}); "
                              f"{remake_hint(path)}") from None


def _progress(message: str) -> None:
    log.info(message)


# ------------------------------------------------------------------ reference
def prepare_molecule(molecule_cfg: dict, labeller_cfg: dict, out_xyz, out_atom_energies) -> None:
    """Build/read the molecule (relaxed with the labeller) and the isolated-atom energies."""
    from ase.io import write

    from .labellers import make_labeller
    from .molecules import load_molecule

    spec = {k: v for k, v in molecule_cfg.items() if k != "elements" and v is not None}
    if molecule_cfg.get("structure"):
        spec.pop("alkane", None)
    else:
        spec.pop("structure", None)
        spec.pop("pull", None)
    mol = load_molecule(spec, elements=molecule_cfg["elements"])
    atoms = mol.atoms.copy()
    atoms.info = {"name": mol.name, "pull1": " ".join(map(str, mol.group1)),
                  "pull2": " ".join(map(str, mol.group2))}
    with atomic_path(out_xyz) as tmp:
        write(tmp, atoms, format="extxyz")
    labeller = make_labeller(labeller_cfg["name"], labeller_cfg.get("options") or {})
    energies = labeller.isolated_atom_energies(list(molecule_cfg["elements"]))
    write_json(out_atom_energies, {"labeller": labeller.name, "unit": "eV", "energies": energies})
    log.info("molecule %s: %d atoms, pulled groups %s and %s", mol.name, len(atoms), mol.group1, mol.group2)


def load_prepared_molecule(path):
    """(atoms, group1, group2) from the file :func:`prepare_molecule` wrote."""
    from ase.io import read

    atoms = read(path, format="extxyz")
    g1 = [int(x) for x in str(atoms.info["pull1"]).split()]
    g2 = [int(x) for x in str(atoms.info["pull2"]).split()]
    atoms.calc = None
    return atoms, g1, g2


def _protocol(smd_cfg: dict):
    """The SMD protocol of the config's ``smd`` section (``batch`` says how the replicas
    run, not how they pull: it is not part of it)."""
    from .dynamics import SMDProtocol

    return SMDProtocol(**{k: v for k, v in smd_cfg.items() if k != "batch"})


def _best_member(ensemble_path, best_json, atoms):
    """(ensemble, index of its best member), the elements checked against ``atoms``."""
    from .schnet import load_model

    ens = load_model(ensemble_path)
    ens.check_elements(atoms.numbers)
    return ens, int(read_json(best_json)["best_member"])


def reference_md(molecule_xyz, reference_cfg: dict, smd_cfg: dict, labeller_cfg: dict, out) -> Frames:
    """The labelled equilibrium set: NVT MD with the labeller (source ``md``)."""
    from .dynamics import run_md
    from .labellers import make_labeller

    atoms, _, _ = load_prepared_molecule(molecule_xyz)
    labeller = make_labeller(labeller_cfg["name"], labeller_cfg.get("options") or {})
    t0 = time.time()
    frames = run_md(atoms, labeller.calculator(), temperature_K=reference_cfg["md_temperature_K"],
                    n_frames=reference_cfg["md_frames"], timestep_fs=smd_cfg["timestep_fs"],
                    seed=reference_cfg["md_seed"], record_every=reference_cfg["md_record_every"],
                    equilibration_steps=reference_cfg["md_equilibration_steps"],
                    thermostat="berendsen", label_as=labeller.name, progress=_progress)
    frames.source[:] = "md"
    frames.iteration[:] = -1
    frames.attrs["wall_seconds"] = time.time() - t0
    write_frames(out, frames)
    log.info("reference MD: %d frames (%s) in %.1f s", len(frames), frames.attrs.get("stop_reason"),
             time.time() - t0)
    return frames


def smd_replica(molecule_xyz, smd_cfg: dict, seed: int, out, labeller_cfg: dict | None = None,
                ensemble_path=None, best_json=None, sampler: dict | None = None) -> Frames:
    """One SMD replica, driven either by the labeller (reference, frames labelled) or by the
    potential (iteration, frames unlabelled).

    With ``sampler["kind"] == "smd"`` (the paper) the potential is the best member. With
    ``"smd+hal"`` it is the whole committee with the hyperactive-learning bias
    E − τσ (adaptive τ from ``tau_rel`` over ``window`` steps), which drives the pull towards
    configurations the committee disagrees on; the SMD spring is added by the engine."""
    from .dynamics import run_smd

    atoms, g1, g2 = load_prepared_molecule(molecule_xyz)
    if labeller_cfg is not None:
        from .labellers import make_labeller

        labeller = make_labeller(labeller_cfg["name"], labeller_cfg.get("options") or {})
        calc, label_as, driver = labeller.calculator(), labeller.name, labeller.name
    else:
        from .schnet import make_calculator

        ens, best = _best_member(ensemble_path, best_json, atoms)
        calc, label_as, driver = make_calculator(ens, member=best), None, f"nnp member {best}"
        if sampler and sampler.get("kind", "smd") == "smd+hal":
            from .hal import HALCalculator

            calc = HALCalculator(make_calculator(ens), tau_rel=float(sampler["tau_rel"]),
                                 window=int(sampler["window"]))
            driver = f"HAL-biased committee (tau_rel {sampler['tau_rel']})"
    t0 = time.time()
    frames = run_smd(atoms, calc, g1, g2, _protocol(smd_cfg), seed=int(seed), label_as=label_as,
                     progress=_progress)
    frames.source[:] = "smd"
    frames.attrs["driver"] = driver
    if hasattr(calc, "history_arrays"):
        hist = calc.history_arrays()
        frames.attrs["hal_tau_final"] = float(hist["tau"][-1]) if len(hist["tau"]) else 0.0
    frames.attrs["wall_seconds"] = time.time() - t0
    write_frames(out, frames)
    log.info("SMD seed %d with %s: %d frames, %s, %.1f s", seed, driver, len(frames),
             frames.attrs.get("stop_reason"), time.time() - t0)
    return frames


def smd_batch_step(molecule_xyz, smd_cfg: dict, seeds: Sequence[int], outs: Sequence, ensemble_path,
                   best_json) -> list[Frames]:
    """The potential's SMD replicas of one iteration in one job: the best member evaluated
    once per step on all of them (:func:`rarelearn.batched_smd.run_smd_batch`). Writes
    ``outs[i]`` for ``seeds[i]``, each file what :func:`smd_replica` writes for that seed
    (same frames to the rounding of the batched model, same extras and attrs, plus
    ``batch_size`` and ``batch_index``; ``wall_seconds`` is the whole batch's)."""
    from .batched_smd import member_evaluator, run_smd_batch

    if len(seeds) != len(outs):
        raise ValueError(f"{len(seeds)} seeds for {len(outs)} output files")
    atoms, g1, g2 = load_prepared_molecule(molecule_xyz)
    ens, best = _best_member(ensemble_path, best_json, atoms)
    driver = f"nnp member {best}"
    t0 = time.time()
    runs = run_smd_batch(atoms, member_evaluator(ens, best, atoms.numbers), g1, g2, _protocol(smd_cfg),
                         [int(s) for s in seeds], progress=_progress)
    wall = time.time() - t0
    for seed, frames, out in zip(seeds, runs, outs):
        frames.source[:] = "smd"
        frames.attrs["driver"] = driver
        frames.attrs["wall_seconds"] = wall
        write_frames(out, frames)
        log.info("SMD seed %d with %s: %d frames, %s", seed, driver, len(frames), frames.attrs.get("stop_reason"))
    log.info("SMD batch of %d replicas with %s: %.1f s", len(runs), driver, wall)
    return runs



class NoBreakError(ValueError):
    """No reference SMD replica (or COGEF scan) broke a bond: there is no barrier to learn."""


def _barrier_of(paths: Sequence, allow_empty: bool = False, start_positions=None) -> dict:
    """E_a statistics over SMD replica files, each read up to its break
    (:func:`rarelearn.barrier.read_replica`, :func:`rarelearn.evaluation.barrier_record`).
    A replica that stopped before the pull began (no frames) has no barrier: it is left out
    and listed in ``failed_replicas``; with ``allow_empty`` False (reference runs) it is an
    error instead. A replica in which nothing broke is counted in ``unbroken``."""
    from .barrier import read_replica

    replicas, reasons, failed = [], [], []
    for p in paths:
        fr = read_frames(p)
        reasons.append(fr.attrs.get("stop_reason", "unknown"))
        if len(fr) == 0:
            if not allow_empty:
                raise ValueError(f"{p}: SMD replica has no frames ({reasons[-1]}); cannot compute its barrier")
            failed.append(str(p))
            continue
        replicas.append(read_replica(fr, start_positions, name=Path(p).stem))
    rec = barrier_record(replicas)
    rec["stop_reasons"] = reasons
    rec["replicas"] = [str(p) for p in paths]
    rec["failed_replicas"] = failed
    return rec


def _start_positions(molecule_xyz):
    return None if molecule_xyz is None else load_prepared_molecule(molecule_xyz)[0].positions


def reference_barrier(replica_paths: Sequence, out, molecule_xyz=None) -> dict:
    """E_a of the reference: mean ± standard error over the replicas that broke (eV).

    Raises :class:`NoBreakError` (one line: what to lengthen) when no replica broke."""
    rec = _barrier_of(replica_paths, start_positions=_start_positions(molecule_xyz))
    if rec["n_replicas"] == 0:
        reach = max(float(read_frames(p).extras["spring_distance"][-1]) for p in replica_paths)
        raise NoBreakError(
            f"no reference SMD replica broke a bond ({len(replica_paths)} replicas, spring distance reached "
            f"{reach:.2f} Å): lengthen the pull (smd.pull_steps, or smd.velocity)")
    if rec["unbroken"]:
        log.warning("reference: %d replica(s) did not break and have no barrier: %s", rec["unbroken"],
                    ", ".join(rec["unbroken_replicas"]))
    write_json(out, rec)
    log.info("reference E_a = %.4f ± %.4f eV over %d replicas (read up to the break; bonds broken: %s)",
             rec["ea_mean"], rec["ea_stderr"], rec["n_replicas"], ", ".join(rec["per_bond"]))
    return rec


def _cogef_calculator(labeller_cfg: dict | None, ensemble_path, best_json, atoms):
    """(calculator, label_as, ensemble or None): the labeller, or the potential's best member."""
    if labeller_cfg is not None:
        from .labellers import make_labeller

        labeller = make_labeller(labeller_cfg["name"], labeller_cfg.get("options") or {})
        return labeller.calculator(), labeller.name, None
    from .schnet import make_calculator

    ens, best = _best_member(ensemble_path, best_json, atoms)
    return make_calculator(ens, member=best), None, ens


def cogef_step(molecule_xyz, cogef_cfg: dict, out_h5, out_json, labeller_cfg: dict | None = None,
               ensemble_path=None, best_json=None) -> dict:
    """The COGEF profile of the pulled atoms (the first atom of each pulled group), with the
    labeller (reference: frames labelled, test data) or with the potential's best member
    (an iteration: the committee's energy spread along the path in extras ``uq_sigma``).
    Writes the relaxed images (HDF5) and the profile's summary (JSON)."""
    from .cogef import cogef_profile
    from .uq import member_energies

    atoms, g1, g2 = load_prepared_molecule(molecule_xyz)
    calc, label_as, ens = _cogef_calculator(labeller_cfg, ensemble_path, best_json, atoms)
    t0 = time.time()
    prof = cogef_profile(atoms, calc, (g1[0], g2[0]), step=cogef_cfg["step"],
                         max_extension=cogef_cfg["max_extension"],
                         post_break_extension=cogef_cfg["post_break_extension"], fmax=cogef_cfg["fmax"],
                         optimizer=cogef_cfg["optimizer"], max_opt_steps=cogef_cfg["max_opt_steps"],
                         refine_tol_kcal=cogef_cfg["refine_tol_kcal"], max_refinements=cogef_cfg["max_refinements"],
                         label_as=label_as, progress=_progress)
    frames = prof.frames
    summary = prof.summary()
    if ens is not None:
        sig = member_energies(ens, frames).std(axis=0)
        frames.extras["uq_sigma"] = sig
        summary["uq_sigma"] = sig.tolist()
        summary["uq_sigma_max_to_break"] = float(sig[prof.intact].max())
    summary["driver"] = label_as or "nnp best member"
    summary["wall_seconds"] = time.time() - t0
    write_frames(out_h5, frames)
    write_json(out_json, summary)
    log.info("COGEF (%s): E_max %.4f eV at Δ = %.3f Å, F_max %.3f eV/Å, %s, %d images, %.1f s",
             summary["driver"], prof.e_max, prof.extension_at_max, prof.f_max,
             f"broke {prof.brk.label} at Δ = {prof.break_extension:.3f} Å" if prof.broke else "NO break",
             len(frames), summary["wall_seconds"])
    return summary


def reference_cogef(molecule_xyz, cogef_cfg: dict, labeller_cfg: dict, out_h5, out_json) -> dict:
    """The labeller's COGEF profile; one that never breaks stops the campaign (one line)."""
    summary = cogef_step(molecule_xyz, cogef_cfg, out_h5, out_json, labeller_cfg=labeller_cfg)
    if not summary["broke"]:
        for f in (out_h5, out_json):
            Path(f).unlink(missing_ok=True)
        raise NoBreakError(f"the reference COGEF scan broke no bond up to Δ = {summary['extension'][-1]:.2f} Å: "
                           f"raise cogef.max_extension")
    return summary


# ------------------------------------------------------------------ training
def initial_dataset(md_path, out) -> None:
    """Iteration 0 trains on the usable frames of the reference MD set."""
    frames = read_frames(md_path)
    ok = frames.subset(frames.ok)
    write_frames(out, ok)
    log.info("iteration 0 data set: %d of %d MD frames usable", len(ok), len(frames))


def fitted_self_energies(atom_energies: dict, frames: Frames) -> dict:
    """Self energies per element (eV): the labeller's isolated-atom energies plus one common
    per-atom shift that makes the mean residual energy of ``frames`` zero.

    The isolated atoms alone leave the whole atomisation energy (tens of eV) for the networks
    to learn; a single composition cannot separate H from C by a linear fit, so the shift is
    shared by all atoms.
    """
    ok = frames.ok
    base = sum(float(atom_energies[_symbol(z)]) for z in frames.numbers)
    shift = float(np.mean(frames.energy[ok]) - base) / frames.n_atoms if ok.any() else 0.0
    return {e: float(v) + shift for e, v in atom_energies.items()}


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]


def _spec(model_cfg: dict, elements: Sequence[str], self_energies: dict) -> dict:
    if model_cfg.get("family", "ani") == "schnet":
        from .schnet import make_schnet_spec

        return make_schnet_spec(list(elements), {e: float(self_energies[e]) for e in elements})
    return {"elements": list(elements),
            "hidden": {e: list(model_cfg["hidden"][e]) for e in elements},
            "self_energies": {e: float(self_energies[e]) for e in elements},
            "activation": "gelu"}


def _train_config(training_cfg: dict):
    from .training import TrainConfig

    keys = ("epochs", "batch_size", "lr", "force_weight", "train_fraction",
            "early_stopping_patience", "lr_patience")
    return TrainConfig(**{k: training_cfg[k] for k in keys})


def _member_setup(frames: Frames, training_cfg: dict, iteration: int, member: int,
                  previous_dir=None) -> dict:
    """Seed, train/validation split and warm-start state of one member (shared by the
    per-member and the fused training steps, so both train the same members)."""
    from .training import inherited_split, random_split, seed_for

    cfg = _train_config(training_cfg)
    seed = seed_for(iteration, member) + int(training_cfg.get("seed", 0))
    init_state = None
    split_kind = "random"
    if iteration > 0 and previous_dir is not None:
        prev = Path(previous_dir)
        if training_cfg["split"] == "inherited":
            best = int(read_json(prev / "best.json")["best_member"])
            pinfo = read_json(prev / "models" / f"member_{best}.json")
            train_idx, val_idx = inherited_split(pinfo["train_hashes"], pinfo["val_hashes"], frames.hashes,
                                                 seed, cfg.train_fraction)
            split_kind = f"inherited from iteration {iteration - 1} member {best}"
        if training_cfg["warm_start"]:
            from .model import read_model_blob

            init_state = read_model_blob(prev / "models" / f"member_{member}.pt")["members"][0]
    if split_kind == "random":
        train_idx, val_idx = random_split(len(frames), seed, cfg.train_fraction)
    log.info("iteration %d member %d: %d frames, split %s (%d train / %d val), seed %d", iteration, member,
             len(frames), split_kind, len(train_idx), len(val_idx), seed)
    return {"member": member, "seed": seed, "split": split_kind, "train_idx": train_idx, "val_idx": val_idx,
            "init_state": init_state}


def _write_member(frames: Frames, spec: dict, setup: dict, iteration: int, state: dict, history: dict,
                  out_model, out_info) -> dict:
    from .schnet import save_model

    member, seed = setup["member"], setup["seed"]
    save_model(out_model, [state], spec, meta={"iteration": iteration, "member": member, "seed": seed})
    hashes = frames.hashes
    info = {"iteration": iteration, "member": member, "seed": seed, "split": setup["split"],
            "train_hashes": [str(h) for h in hashes[np.asarray(setup["train_idx"], dtype=int)]],
            "val_hashes": [str(h) for h in hashes[np.asarray(setup["val_idx"], dtype=int)]],
            "history": history}
    write_json(out_info, info)
    return info


def _training_inputs(data_path, atom_energies_json, model_cfg: dict, elements: Sequence[str],
                     base_data_path=None) -> tuple[Frames, dict]:
    frames = read_frames(data_path)
    atom_e = read_json(atom_energies_json)["energies"]
    base = frames if base_data_path is None else read_frames(base_data_path)
    return frames, _spec(model_cfg, elements, fitted_self_energies(atom_e, base))


def train_member_step(data_path, atom_energies_json, model_cfg: dict, training_cfg: dict,
                      elements: Sequence[str], iteration: int, member: int, out_model, out_info,
                      previous_dir=None, base_data_path=None) -> dict:
    """Train ensemble member ``member`` of iteration ``iteration``; write its model and split.

    Self energies are fitted on ``base_data_path`` (iteration 0's data set), so they are the
    same in every iteration."""
    from .schnet import train_schnet_member
    from .training import train_member

    frames, spec = _training_inputs(data_path, atom_energies_json, model_cfg, elements, base_data_path)
    setup = _member_setup(frames, training_cfg, iteration, member, previous_dir)
    train = train_schnet_member if spec.get("family") == "schnet" else train_member
    state, history = train(frames, setup["train_idx"], setup["val_idx"], spec, _train_config(training_cfg),
                           seed=setup["seed"], init_state=setup["init_state"], log=log.info)
    return _write_member(frames, spec, setup, iteration, state, history, out_model, out_info)


def train_ensemble_step(data_path, atom_energies_json, model_cfg: dict, training_cfg: dict,
                        elements: Sequence[str], iteration: int, out_models: Sequence, out_infos: Sequence,
                        previous_dir=None, base_data_path=None) -> list[dict]:
    """Train every member of an iteration in one job (``training.fused``).

    ANI members share one AEV/Jacobian computation (:func:`training.train_ensemble_fused`);
    each still has its own seed, split and warm start, exactly as in
    :func:`train_member_step`, and the files written are the same. SchNet members are
    trained one after the other in this job."""
    from .schnet import train_schnet_member
    from .training import train_ensemble_fused

    if len(out_models) != len(out_infos):
        raise ValueError(f"{len(out_models)} model files but {len(out_infos)} info files")
    frames, spec = _training_inputs(data_path, atom_energies_json, model_cfg, elements, base_data_path)
    setups = [_member_setup(frames, training_cfg, iteration, k, previous_dir)
              for k in range(len(out_models))]
    cfg = _train_config(training_cfg)
    if spec.get("family") == "schnet":
        results = [train_schnet_member(frames, s["train_idx"], s["val_idx"], spec, cfg, seed=s["seed"],
                                       init_state=s["init_state"], log=log.info) for s in setups]
    else:
        results = train_ensemble_fused(frames, [(s["train_idx"], s["val_idx"]) for s in setups], spec, cfg,
                                       seeds=[s["seed"] for s in setups],
                                       init_states=[s["init_state"] for s in setups], log=log.info)
    return [_write_member(frames, spec, s, iteration, state, hist, m, i)
            for s, (state, hist), m, i in zip(setups, results, out_models, out_infos)]


def best_model_step(data_path, member_paths: Sequence, out_ensemble, out_best) -> dict:
    """Join the members into one ensemble file; the best member has the lowest force MAE
    over the whole data set (train + validation)."""
    from .model import read_model_blob
    from .schnet import load_model, save_model
    from .training import best_member

    states, spec = [], None
    for p in member_paths:
        blob = read_model_blob(p)
        spec = blob["spec"]
        states.extend(blob["members"])
    save_model(out_ensemble, states, spec, meta={"members": [str(p) for p in member_paths]})
    ens = load_model(out_ensemble)
    frames = read_frames(data_path)
    k, maes = best_member(ens, frames)
    rec = {"best_member": int(k), "force_mae": [float(m) for m in maes], "unit": "eV/Å"}
    write_json(out_best, rec)
    log.info("best member %d (force MAE %s eV/Å)", k, ", ".join(f"{m:.4f}" for m in maes))
    return rec


# ------------------------------------------------------------------ sampling
def uq_step(ensemble_path, replica_paths: Sequence, selection_cfg: dict, out) -> None:
    """Every member's energy on every SMD frame; σ per frame; μ+nσ threshold per replica
    (one group per replica, named by its file's stem; attr ``pulls``: their directory)."""
    import h5py

    from .schnet import load_model
    from .uq import member_energies, sigma, threshold

    ens = load_model(ensemble_path)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["units"] = "eV"
        # the directory of the pulls scored: smd (best member) or smd_hal (HAL-biased)
        h5.attrs["pulls"] = Path(replica_paths[0]).parent.name if len(replica_paths) else "smd"
        for p in replica_paths:
            fr = read_frames(p)
            g = h5.create_group(Path(p).stem)
            if len(fr) == 0:
                g.create_dataset("energies", data=np.zeros((ens.n_members, 0)))
                g.create_dataset("sigma", data=np.zeros(0))
                g.attrs["threshold"] = np.inf
                continue
            e = member_energies(ens, fr)
            s = sigma(e)
            thr = threshold(s, n_first=selection_cfg["uq_first_steps"], n_sigma=selection_cfg["n_sigma"])
            g.create_dataset("energies", data=e)
            g.create_dataset("sigma", data=s)
            g.attrs["threshold"] = thr
            log.info("%s: σ mean %.4f eV, threshold %.4f eV, %d frames above", Path(p).stem, s.mean(), thr,
                     int((s > thr).sum()))


def blowup_frames(frames: Frames, lookback: int | None) -> list[int]:
    """For an SMD that the blow-up check stopped: the frame ``lookback`` recorded frames before
    the stop (the configuration the potential was driving towards its failure), to be labelled
    whatever its UQ. Empty for a completed run or ``lookback`` None."""
    reason = str(frames.attrs.get("stop_reason", "completed"))
    if lookback is None or len(frames) == 0 or reason == "completed":
        return []
    return [max(len(frames) - 1 - int(lookback), 0)]


def _to_label(kept: Frames, source: str | None, iteration: int, selection_cfg: dict) -> Frames:
    """The kept frames marked unlabelled (``source``, or the sources they carry when None;
    ``iteration``), followed by ``selection.augment_copies`` noisy copies of each (seed
    ``selection.seed + 7919·iteration``); no extras or attrs (what they described was the
    sampling run)."""
    from .selection import augment

    kept.extras, kept.attrs = {}, {}
    if source is not None:
        kept.source[:] = source
    kept.iteration[:] = iteration
    kept.status[:] = "unlabelled"
    kept.energy = np.full(len(kept), np.nan)
    kept.forces = np.full((len(kept), kept.n_atoms, 3), np.nan)
    kept.labeller[:] = ""
    if not selection_cfg["augment_copies"]:
        return kept
    noisy = augment(kept, n_copies=selection_cfg["augment_copies"], amplitude=selection_cfg["augment_amplitude"],
                    seed=selection_cfg["seed"] + 7919 * iteration)
    noisy.extras = {}
    return Frames.concatenate([kept, noisy])


def _write_selection(out_dir, new: Frames | None, n_kept: int, batch_size: int, head: dict, tail: dict) -> dict:
    """Write the frames to label as ``out_dir/batch_NNNN.h5`` (``batch_size`` frames each) and
    ``out_dir/selection.json`` (``head``, the counts, ``tail``), all in a temporary directory
    renamed into place when complete. Returns the summary written."""
    out_dir = Path(out_dir)
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    n_batches = 0
    if new is not None:
        for b, start in enumerate(range(0, len(new), batch_size)):
            write_frames(tmp_dir / f"batch_{b:04d}.h5", new.subset(slice(start, start + batch_size)))
            n_batches += 1
    summary = {**head, "selected": n_kept, "augmented": 0 if new is None else len(new) - n_kept,
               "total_new": 0 if new is None else len(new), "batches": n_batches, "empty": n_kept == 0, **tail}
    write_json(tmp_dir / "selection.json", summary)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp_dir, out_dir)
    return summary


def _smd_picks(uq_path, replica_paths: Sequence, selection_cfg: dict) -> tuple[list, list, list]:
    """Per SMD replica: the frames above its UQ threshold, screened, post-break capped, plus
    the blow-up look-back frame. Returns (picked Frames, per-replica records, thresholds)."""
    import h5py

    from .breaks import find_break
    from .selection import select_frames

    per_replica, picked, thresholds = [], [], []
    with h5py.File(uq_path, "r") as h5:
        for p in replica_paths:
            fr = read_frames(p)
            g = h5[Path(p).stem]
            s, thr, e = g["sigma"][()], float(g.attrs["threshold"]), g["energies"][()]
            if len(fr) == 0:
                per_replica.append({"replica": Path(p).stem, "file": str(p), "candidates": 0, "kept": 0})
                continue
            thresholds.append(thr)
            bi = find_break(fr.numbers, fr.positions).index
            idx = select_frames(s, thr, fr.extras["spring_distance"], e.mean(axis=0), bi,
                                max_post_break=selection_cfg["max_post_break"], max_frames=None,
                                min_distance_gap=selection_cfg["min_distance_gap"],
                                min_energy_gap=selection_cfg["min_energy_gap_kcal"] * EV_PER_KCAL_MOL)
            idx = np.asarray(idx, dtype=int)
            forced = blowup_frames(fr, selection_cfg.get("blowup_lookback", 10))
            idx = np.union1d(idx, forced).astype(int)
            sub = fr.subset(idx)
            sub.extras = {"uq_sigma": s[np.asarray(idx, dtype=int)]}
            picked.append(sub)
            per_replica.append({"replica": Path(p).stem, "file": str(p), "candidates": int((s > thr).sum()),
                                "kept": len(idx), "threshold": thr, "break_index": bi,
                                "stop_reason": fr.attrs.get("stop_reason"), "blowup_frames": forced,
                                "indices": [int(i) for i in idx]})
    return picked, per_replica, thresholds


def cogef_picks(cogef_path, threshold: float, selection_cfg: dict, max_frames: int | None) -> tuple:
    """The frames to label from the potential's own COGEF path (sampler ``cogef`` and
    ``smd+cogef``): its relaxed images (in order of extension) whose committee spread
    ``uq_sigma`` exceeds ``threshold``, screened like SMD frames (the extension standing in
    for the spring distance, the best member's energy for the predicted energy), at most
    ``selection.max_post_break`` at or past the break, at most ``max_frames`` spread evenly
    over the path. Returns (Frames or None, record)."""
    from .breaks import find_break
    from .selection import select_frames

    fr = read_frames(cogef_path)
    rec = {"file": str(cogef_path), "images": len(fr), "threshold": float(threshold), "candidates": 0, "kept": 0}
    if len(fr) == 0 or not np.isfinite(threshold):
        return None, rec
    s = np.asarray(fr.extras["uq_sigma"], dtype=float)
    bi = find_break(fr.numbers, fr.positions).index
    idx = select_frames(s, threshold, fr.extras["extension"], fr.extras["potential_energy"], bi,
                        max_post_break=selection_cfg["max_post_break"], max_frames=max_frames,
                        min_distance_gap=selection_cfg["min_distance_gap"],
                        min_energy_gap=selection_cfg["min_energy_gap_kcal"] * EV_PER_KCAL_MOL)
    ext = fr.extras["extension"]
    rec.update({"candidates": int((s > threshold).sum()), "kept": len(idx), "break_index": bi,
                "indices": [int(i) for i in idx], "extensions": [float(ext[i]) for i in idx]})
    if not len(idx):
        return None, rec
    sub = fr.subset(idx)
    sub.extras = {"uq_sigma": s[idx]}
    return sub, rec


def select_step(uq_path, replica_paths: Sequence, selection_cfg: dict, batch_size: int, iteration: int,
                out_dir, cogef_path=None, cogef_frames: int | None = None, smd: bool = True) -> dict:
    """Pick frames above the UQ threshold, screen, cap, augment; write them in label batches.

    SMD frames (``smd``) come from the scored replicas (source ``al``); with ``cogef_path``
    (samplers ``cogef`` and ``smd+cogef``) frames also come from the potential's COGEF path
    (source ``cogef``), judged against the median of the replicas' thresholds (the same
    μ+nσ rule). Budget: the COGEF frames take at most ``cogef_frames`` (``selection.max_frames``
    when SMD frames are not selected), the SMD frames the rest of ``selection.max_frames``.
    Writes ``out_dir/batch_NNNN.h5`` (unlabelled frames) and ``out_dir/selection.json``.
    An empty selection writes no batch and is recorded as such.
    """
    picked, per_replica, thresholds = _smd_picks(uq_path, replica_paths, selection_cfg)
    max_frames = selection_cfg["max_frames"]
    parts, tail = [], {"replicas": per_replica if smd else [], "sources": {}}
    if cogef_path is not None:
        thr = float(np.median(thresholds)) if thresholds else float("nan")
        cap = (cogef_frames if smd else max_frames)
        if cap is not None and max_frames is not None:
            cap = min(cap, max_frames)
        sub, tail["cogef"] = cogef_picks(cogef_path, thr, selection_cfg, cap)
        if sub is not None:
            sub.source[:] = "cogef"
            parts.append(sub)
            tail["sources"]["cogef"] = len(sub)
    if smd and picked:
        kept = Frames.concatenate(picked)
        kept.source[:] = "al"
        room = None if max_frames is None else max_frames - sum(len(p) for p in parts)
        if room is not None and len(kept) > room:
            keep = np.unique(np.linspace(0, len(kept) - 1, room).round().astype(int)) if room > 0 else []
            kept = kept.subset(np.asarray(keep, dtype=int))
        if len(kept):
            parts.append(kept)
            tail["sources"]["al"] = len(kept)
    kept = Frames.concatenate(parts) if parts else None
    n_kept = 0 if kept is None else len(kept)
    new = _to_label(kept, None, iteration, selection_cfg) if n_kept else None
    summary = _write_selection(out_dir, new, n_kept, batch_size, {"iteration": iteration}, tail)
    if n_kept == 0:
        log.warning("iteration %d: empty selection (no frame above the UQ threshold survived screening)",
                    iteration)
    else:
        log.info("iteration %d: selected %d frames (%s) + %d augmented, %d label batches", iteration, n_kept,
                 ", ".join(f"{k} {v}" for k, v in tail["sources"].items()), summary["augmented"],
                 summary["batches"])
    return summary


def hal_run(molecule_xyz, ensemble_path, sampler_cfg: dict, timestep_fs: float, seed: int, out,
            iteration: int = -1) -> Frames:
    """One hyperactive-learning run (sampler ``hal``): Langevin MD at
    ``sampler_cfg["temperature_K"]`` from the prepared molecule, driven by the whole
    committee with the HAL bias E − τσ (adaptive τ from ``tau_rel`` over ``window`` steps),
    until the stop criterion (``sampler_cfg["stop"]``: softmax | max, ``tol``, ``eps``) fires
    or ``max_steps`` steps (of ``timestep_fs`` fs) are done.

    Writes the run's recorded frames (every ``record_every`` steps, plus the firing step;
    unlabelled, source ``hal``; extras ``hal_tau``, ``hal_sigma`` (eV), ``hal_score``) with
    attrs ``hal_fired``, ``hal_pick`` (index of the frame handed to labelling, −1: none) and
    ``hal_pick_reason``. Hand-over rule: the firing frame; a run that ends without firing
    (``max_steps`` reached, or a blow-up, which stops cleanly and drops its bad step) hands
    over its most uncertain recorded frame (highest score) when ``fallback`` is
    ``most_uncertain``, nothing when it is ``none``."""
    from .dynamics import run_md
    from .hal import HALCalculator, HALMonitor, StopCriterion
    from .schnet import load_model, make_calculator

    atoms, _, _ = load_prepared_molecule(molecule_xyz)
    ens = load_model(ensemble_path)
    ens.check_elements(atoms.numbers)
    st = sampler_cfg["stop"]
    crit = StopCriterion(kind=st["kind"], tol=st["tol"], eps=float(st["eps"]))
    calc = HALCalculator(make_calculator(ens), tau_rel=float(sampler_cfg["tau_rel"]),
                         window=int(sampler_cfg["window"]), stop=crit)
    monitor = HALMonitor(calc)
    every = int(sampler_cfg["record_every"])
    n_frames = -(-int(sampler_cfg["max_steps"]) // every)
    t0 = time.time()
    frames = run_md(atoms, calc, temperature_K=float(sampler_cfg["temperature_K"]), n_frames=n_frames,
                    timestep_fs=float(timestep_fs), seed=int(seed), record_every=every, thermostat="langevin",
                    progress=_progress, stop_when=monitor)
    vals = monitor.values(frames.extras["step"]) if len(frames) else {"tau": [], "sigma": [], "score": []}
    frames.extras.update({f"hal_{k}": np.asarray(v, dtype=np.float64) for k, v in vals.items()})
    fired = bool(frames.attrs.get("stop_requested")) and len(frames) > 0
    if fired:
        pick, why = len(frames) - 1, "stop criterion fired"
    elif sampler_cfg["fallback"] == "most_uncertain" and len(frames):
        pick, why = int(np.nanargmax(frames.extras["hal_score"])), "most uncertain recorded frame (no stop)"
    else:
        pick, why = -1, "none (no stop)"
    frames.source[:] = "hal"
    frames.iteration[:] = iteration
    hist = calc.history_arrays()
    frames.attrs.update({"driver": f"HAL-biased committee (tau_rel {sampler_cfg['tau_rel']})", "hal_fired": fired,
                         "hal_pick": int(pick), "hal_pick_reason": why,
                         "hal_stop": {"kind": crit.kind, "tol": float(crit.tol), "eps": crit.eps},
                         "hal_tau_final": float(hist["tau"][-1]) if len(hist["tau"]) else 0.0,
                         "wall_seconds": time.time() - t0})
    write_frames(out, frames)
    log.info("HAL run seed %d: %s after %d steps; hands over %s (%.1f s)", seed, frames.attrs["stop_reason"],
             frames.attrs["steps_done"], why if pick < 0 else f"frame {pick} (step "
             f"{int(frames.extras['step'][pick])}, {why})", time.time() - t0)
    return frames


def hal_select_step(run_paths: Sequence, selection_cfg: dict, batch_size: int, iteration: int, out_dir) -> dict:
    """Sampler ``hal``: the frame each HAL run handed over (``attrs["hal_pick"]``, see
    :func:`hal_run`), plus ``selection.augment_copies`` noisy copies of each; written in
    label batches like :func:`select_step` (``out_dir/batch_NNNN.h5``, ``selection.json``).
    The frames keep source ``hal``; no UQ threshold or similarity screening is applied."""
    picked, per_run = [], []
    for p in run_paths:
        fr = read_frames(p)
        pick = int(fr.attrs.get("hal_pick", -1))
        rec = {"run": Path(p).stem, "fired": bool(fr.attrs.get("hal_fired", False)), "pick": pick,
               "reason": fr.attrs.get("hal_pick_reason"), "stop_reason": fr.attrs.get("stop_reason"),
               "steps_done": fr.attrs.get("steps_done")}
        if 0 <= pick < len(fr):
            sub = fr.subset([pick])
            rec.update({"step": int(sub.extras["step"][0]), "score": float(sub.extras["hal_score"][0]),
                        "hash": str(sub.hashes[0])})
            picked.append(sub)
        per_run.append(rec)
    kept = Frames.concatenate(picked) if picked else None
    n_kept = 0 if kept is None else len(kept)
    new = _to_label(kept, "hal", iteration, selection_cfg) if n_kept else None
    summary = _write_selection(out_dir, new, n_kept, batch_size, {"iteration": iteration, "sampler": "hal"},
                               {"fired": sum(r["fired"] for r in per_run), "runs": per_run})
    log.info("iteration %d: %d of %d HAL runs fired; %d frames handed over + %d augmented, %d label batches",
             iteration, summary["fired"], len(per_run), n_kept, summary["augmented"], summary["batches"])
    return summary


# ------------------------------------------------------------------ labelling
def _label_one_in_child(labeller, positions, numbers, conn) -> None:  # pragma: no cover - child process
    from ase import Atoms

    try:
        e, f = labeller.single_point(Atoms(numbers=numbers, positions=positions, pbc=False))
        conn.send(("ok", float(e), np.asarray(f)))
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}", None))
    finally:
        conn.close()


def label_isolated(labeller, frames: Frames, timeout_s: float | None) -> Frames:
    """Label frame by frame, each in its own child process with a wall-time limit.

    A frame whose calculation crashes the process, or runs past ``timeout_s``, is recorded
    as ``failed`` with the reason; the others are labelled as usual.
    """
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    out = frames.subset(np.arange(len(frames)))
    n = len(out)
    out.energy = np.full(n, np.nan)
    out.forces = np.full((n, out.n_atoms, 3), np.nan)
    out.status = np.array(["failed"] * n, dtype=object)
    out.labeller = np.array([labeller.name] * n, dtype=object)
    seconds = np.zeros(n)
    reasons = []
    for i in range(n):
        parent, child = ctx.Pipe(duplex=False)
        t0 = time.perf_counter()
        proc = ctx.Process(target=_label_one_in_child, args=(labeller, out.positions[i], out.numbers, child))
        proc.start()
        child.close()
        msg, timed_out = None, not parent.poll(timeout_s)
        if not timed_out:
            try:
                msg = parent.recv()
            except EOFError:  # the child died without answering
                msg = None
        proc.join(0 if timed_out else 5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()
        seconds[i] = time.perf_counter() - t0
        if msg is None:
            reason = (f"timed out after {timeout_s} s" if timed_out
                      else f"labeller process died (exit code {proc.exitcode})")
            reasons.append((i, reason))
            log.warning("%s: frame %d failed: %s", labeller.name, i, reason)
        elif msg[0] == "ok":
            out.energy[i], out.forces[i], out.status[i] = msg[1], msg[2], "ok"
        else:
            reasons.append((i, msg[1]))
            log.warning("%s: frame %d failed: %s", labeller.name, i, msg[1])
    out.extras["label_seconds"] = seconds
    out.attrs["failures"] = [f"frame {i}: {r}" for i, r in reasons]
    return out


#: The labelling screen's defaults (schema ``labelling.max_force``, eV/Å, and
#: ``labelling.min_distance``, Å): the SMD blow-up rule's. GFN2-xTB returns 760 eV/Å for
#: two atoms 0.52 Å apart and converges to +25 000 eV for two atoms 0.01 Å apart.
MAX_LABEL_FORCE = 50.0
MIN_LABEL_DISTANCE = 0.5


def screen_labels(frames: Frames, max_force: float | None = MAX_LABEL_FORCE,
                  min_distance: float | None = MIN_LABEL_DISTANCE) -> list[str]:
    """Mark labelled frames of unphysical geometries ``screened`` in place: an atom's force
    above ``max_force`` (eV/Å) or two atoms closer than ``min_distance`` (Å); None switches
    a rule off. Their labels are kept for inspection; ``Frames.ok`` is False for them, so
    they are left out of training. Returns one reason per screened frame."""
    from .geometry import min_pair_distance

    reasons: list[str] = []
    if not len(frames):
        return reasons
    labelled = frames.status == "ok"
    dmin = np.atleast_1d(min_pair_distance(frames.positions))
    fmax = np.full(len(frames), np.nan)
    finite = np.isfinite(frames.forces).all(axis=(1, 2))
    fmax[finite] = np.linalg.norm(frames.forces[finite], axis=2).max(axis=1)
    for i in np.flatnonzero(labelled):
        why = []
        if min_distance is not None and dmin[i] < min_distance:
            why.append(f"atoms {dmin[i]:.3f} Å apart (< {min_distance} Å)")
        if max_force is not None and np.isfinite(fmax[i]) and fmax[i] > max_force:
            why.append(f"|F| {fmax[i]:.1f} eV/Å (> {max_force} eV/Å)")
        if why:
            frames.status[i] = STATUS_SCREENED
            reasons.append(f"frame {i}: " + ", ".join(why))
    frames.extras["label_max_force"] = fmax
    frames.extras["min_pair_distance"] = dmin.astype(np.float64)
    return reasons


def label_step(batch_path, labeller_cfg: dict, out, attempt: int = 1, frame_timeout_s: float | None = None,
               screen: dict | None = None) -> Frames:
    """Label one batch; frames that fail are kept with status ``failed``, frames of unphysical
    geometries (``screen``: ``max_force`` eV/Å, ``min_distance`` Å; the schema's
    ``labelling`` keys, default 50 eV/Å and 0.5 Å) with status ``screened``
    (:func:`screen_labels`); neither is trained on.

    On a retry (``attempt`` > 1, after the job died or ran out of time) every frame is
    labelled in its own process with ``frame_timeout_s``, so one bad frame cannot take the
    batch down again.
    """
    from .labellers import make_labeller

    screen = {"max_force": MAX_LABEL_FORCE, "min_distance": MIN_LABEL_DISTANCE, **(screen or {})}

    frames = read_frames(batch_path)
    labeller = make_labeller(labeller_cfg["name"], labeller_cfg.get("options") or {})
    t0 = time.time()
    if attempt > 1:
        log.warning("attempt %d: labelling frame by frame in child processes (timeout %s s)", attempt,
                    frame_timeout_s)
        labelled = label_isolated(labeller, frames, frame_timeout_s)
    else:
        labelled = labeller.label(frames)
    screened = screen_labels(labelled, screen["max_force"], screen["min_distance"])
    for reason in screened:
        log.warning("%s screened out (unphysical geometry, left out of training): %s", *reason.split(": ", 1))
    labelled.attrs["screened"] = screened
    labelled.attrs["screen"] = {"max_force": screen["max_force"], "min_distance": screen["min_distance"]}
    labelled.attrs["label_seconds"] = time.time() - t0
    write_frames(out, labelled)
    n_failed = int((labelled.status == "failed").sum())
    log.info("labelled %d frames with %s in %.1f s, %d failed, %d screened", len(labelled), labeller.name,
             time.time() - t0, n_failed, len(screened))
    return labelled


def merge_step(data_path, labelled_paths: Sequence, iteration: int, out, out_info) -> dict:
    """Append the labelled frames to the data set; drop failed labels and duplicates."""
    base = read_frames(data_path)
    new_parts = [read_frames(p) for p in labelled_paths]
    n_new = sum(len(p) for p in new_parts)
    n_failed = sum(int((p.status == "failed").sum()) for p in new_parts)
    n_screened = sum(int((p.status == STATUS_SCREENED).sum()) for p in new_parts)
    label_seconds = sum(float(p.attrs.get("label_seconds", 0.0)) for p in new_parts)
    merged, counts = merge_frames([base] + new_parts, only_ok=True)
    merged.attrs = {"iteration": iteration}
    write_frames(out, merged)
    info = {"iteration": iteration, "previous_frames": len(base), "labelled": n_new, "failed_labels": n_failed,
            "screened_labels": n_screened, "added": len(merged) - len(base), "total_frames": len(merged), "duplicates": counts["duplicates"],
            "label_seconds": label_seconds,
            "selected": int(sum(np.isin(p.source, ("al", "hal", "cogef")).sum() for p in new_parts)),
            "augmented": int(sum((p.source == "augment").sum() for p in new_parts))}
    if n_new and n_failed + n_screened == n_new:
        log.warning("iteration %d: all %d labels failed or were screened out; the data set is unchanged",
                    iteration, n_new)
        info["all_labels_failed"] = True
    write_json(out_info, info)
    log.info("merge: %d + %d labelled (%d failed, %d screened) -> %d frames", len(base), n_new, n_failed,
             n_screened, len(merged))
    return info


# ------------------------------------------------------------------ evaluation
def _benchmark_seconds(iteration: int, root="logs/benchmarks") -> float:
    total = 0.0
    for f in glob.glob(os.path.join(root, f"iter_{iteration:03d}", "*.tsv")):
        try:
            with open(f) as fh:
                lines = fh.read().splitlines()
            total += float(lines[1].split("\t")[0])
        except (IndexError, ValueError, OSError):
            continue
    return total


def bond_flags(molecule_xyz, replica_paths: Sequence) -> list[dict]:
    """Per replica: C–C bond/fragment report of the SMD (paper's SchNet failure mode):
    more than two pieces, or a C–C bond other than the stretched one broken."""
    from .schnet import cc_bond_report

    atoms, g1, g2 = load_prepared_molecule(molecule_xyz)
    out = []
    for p in replica_paths:
        fr = read_frames(p)
        if len(fr) == 0 or "C" not in atoms.get_chemical_symbols():
            out.append({"replica": Path(p).stem, "n_frames": len(fr)})
            continue
        rep = cc_bond_report(fr.numbers, fr.positions, atoms.positions, pulled=(g1[0], g2[0]))
        out.append({"replica": Path(p).stem, **rep["summary"]})
    return out


def _no_barrier_reason(nnp: dict) -> str | None:
    """Why an iteration has no SMD barrier (None when it has one)."""
    if nnp["n_replicas"] > 0:
        return None
    parts = []
    if nnp["failed_replicas"]:
        parts.append(f"{len(nnp['failed_replicas'])} replica(s) blew up before the pull")
    if nnp["unbroken"]:
        reasons = sorted({r["stop_reason"] for r in nnp["replica_records"] if not r["broke"]})
        parts.append(f"{nnp['unbroken']} replica(s) broke no bond (stopped: {', '.join(reasons)})")
    return "; ".join(parts) or "no replicas"


COGEF_KEYS = ("e_max", "extension_at_max", "f_max", "broke", "broken_label", "break_extension",
              "post_break_rise")


def evaluate_step(iteration: int, replica_paths: Sequence, reference_json, unseen_paths: Sequence,
                  ensemble_path, best_json, member_infos: Sequence, uq_path, merge_json, out,
                  out_predictions=None, molecule_xyz=None, cogef_json=None, reference_cogef_json=None,
                  reference_cogef_frames=None) -> dict:
    """ΔE_a of this iteration's SMD replicas against the reference, both read up to the break,
    with the work and force after the break; the COGEF comparison when both profiles are
    given; errors on unseen frames (the reference SMD replicas ``unseen_paths`` and, when
    given, the reference's COGEF images ``reference_cogef_frames``)."""
    from .evaluation import cogef_comparison
    from .schnet import load_model
    from .training import evaluate_errors
    from .uq import member_energies

    nnp = _barrier_of(replica_paths, allow_empty=True, start_positions=_start_positions(molecule_xyz))
    ref = read_json(reference_json)
    rec = {"iteration": iteration}
    rec.update({f"nnp_{k}": v for k, v in nnp.items() if k != "replicas"})
    rec.update({f"ref_{k}": ref.get(k) for k in ("ea_mean", "ea_stderr", "n_replicas", "break_distance_mean",
                                                  "post_break_work_mean", "post_break_force_mean", "per_bond")})
    rec.update(delta_record(nnp, ref))
    rec["no_barrier_reason"] = _no_barrier_reason(nnp)
    if cogef_json is not None and reference_cogef_json is not None:
        c_nnp, c_ref = read_json(cogef_json), read_json(reference_cogef_json)
        rec.update({f"nnp_cogef_{k}": c_nnp.get(k) for k in COGEF_KEYS})
        rec.update({f"ref_cogef_{k}": c_ref.get(k) for k in COGEF_KEYS})
        rec.update(cogef_comparison(c_nnp, c_ref))
    ens = load_model(ensemble_path)
    unseen = Frames.concatenate([read_frames(p) for p in unseen_paths])
    unseen = unseen.subset(unseen.ok)
    errs = evaluate_errors(ens, unseen)
    predicted = member_energies(ens, unseen).mean(axis=0)
    rec.update({"unseen_frames": len(unseen),
                "unseen_energy_mae": float(np.abs(predicted - unseen.energy).mean()),
                "unseen_force_mae": errs["force_mae"]})
    if reference_cogef_frames is not None:
        cf = read_frames(reference_cogef_frames)
        cf = cf.subset(cf.ok)
        rec["cogef_frames_energy_mae"] = float(np.abs(member_energies(ens, cf).mean(axis=0) - cf.energy).mean())
    if out_predictions is not None:
        write_json(out_predictions, {"unit": "eV", "reference_energy": unseen.energy,
                                     "predicted_energy": predicted,
                                     "spring_distance": unseen.extras.get("spring_distance")})
    best = read_json(best_json)
    rec["best_member"] = best["best_member"]
    members = []
    for p in member_infos:
        h = read_json(p)["history"]
        members.append({k: h.get(k) for k in ("train_energy_mae", "val_energy_mae", "train_force_mae",
                                               "val_force_mae", "best_epoch", "seconds")})
    rec["members"] = members
    for key in ("train_energy_mae", "val_energy_mae"):
        vals = [m[key] for m in members if m.get(key) is not None]
        rec[f"mean_{key}"] = float(np.mean(vals)) if vals else float("nan")
    merge = read_json(merge_json)
    rec.update({"frames_selected": merge["selected"], "frames_augmented": merge["augmented"],
                "labels_failed": merge["failed_labels"], "labels_screened": merge.get("screened_labels", 0),
                "frames_added": merge["added"],
                "dataset_frames": merge["total_frames"], "label_seconds": merge["label_seconds"],
                "all_labels_failed": bool(merge.get("all_labels_failed", False)),
                "empty_selection": merge["labelled"] == 0})
    rec["wall_seconds"] = _benchmark_seconds(iteration)
    if molecule_xyz is not None:
        flags = bond_flags(molecule_xyz, replica_paths)
        rec["bond_report"] = flags
        rec["replicas_multi_fragment"] = sum(f.get("first_multi_fragment") is not None for f in flags)
        rec["replicas_wrong_bond_broken"] = sum(f.get("first_wrong_bond_broken") is not None for f in flags)
    write_json(out, rec)
    log.info("iteration %d: E_a (to the break) %.4f ± %.4f eV vs reference %.4f ± %.4f eV: |ΔE_a| = %.2f ± %.2f "
             "kcal/mol%s; work after the break %.3f eV (reference %.3f); COGEF |ΔE_max| = %s kcal/mol; "
             "unseen energy MAE %.4f eV", iteration, nnp["ea_mean"], nnp["ea_stderr"], ref["ea_mean"],
             ref["ea_stderr"], rec["abs_delta_ea_kcal"], rec["delta_ea_stderr_kcal"],
             f" ({rec['no_barrier_reason']})" if rec["no_barrier_reason"] else "", nnp["post_break_work_mean"],
             ref.get("post_break_work_mean", float("nan")), f"{rec.get('cogef_abs_delta_e_max_kcal', float('nan')):.2f}",
             errs["energy_mae"])
    return rec


SUMMARY_COLUMNS = [
    "iteration", "nnp_ea_mean", "nnp_ea_stderr", "nnp_n_replicas", "ref_ea_mean", "ref_ea_stderr",
    "ref_n_replicas", "delta_ea", "delta_ea_stderr", "abs_delta_ea_kcal", "delta_ea_stderr_kcal",
    "nnp_break_distance_mean", "ref_break_distance_mean", "unseen_energy_mae", "unseen_force_mae",
    "mean_train_energy_mae", "mean_val_energy_mae", "frames_selected", "frames_augmented",
    "labels_failed", "labels_screened", "frames_added", "labels_total", "dataset_frames", "wall_seconds", "label_seconds",
    "empty_selection", "all_labels_failed", "replicas_multi_fragment", "replicas_wrong_bond_broken",
    "nnp_unbroken", "nnp_post_break_work_mean", "ref_post_break_work_mean", "nnp_post_break_force_mean",
    "ref_post_break_force_mean", "post_break_work_delta_kcal", "no_barrier_reason",
    "nnp_cogef_e_max", "ref_cogef_e_max", "cogef_delta_e_max_kcal", "cogef_abs_delta_e_max_kcal",
    "nnp_cogef_f_max", "ref_cogef_f_max", "cogef_delta_f_max", "cogef_rmse_to_break_kcal", "cogef_same_bond",
    "nnp_cogef_broke", "nnp_cogef_broken_label", "ref_cogef_broken_label", "cogef_post_break_rise",
    "ref_cogef_post_break_rise", "cogef_frames_energy_mae",
]


def summary_step(evaluation_paths: Sequence, out, reference_md_frames: int | None = None) -> "object":
    """One row per iteration (``results/summary.csv``)."""
    import pandas as pd

    rows = []
    labels_total = reference_md_frames or 0
    for p in evaluation_paths:
        ev = read_json(p)
        labels_total += ev["frames_selected"] + ev["frames_augmented"]
        row = {c: ev.get(c) for c in SUMMARY_COLUMNS if c != "labels_total"}
        row["labels_total"] = labels_total
        for k, m in enumerate(ev.get("members", [])):
            row[f"member{k}_train_energy_mae"] = m.get("train_energy_mae")
            row[f"member{k}_val_energy_mae"] = m.get("val_energy_mae")
        rows.append(row)
    df = pd.DataFrame(rows)
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    return df
