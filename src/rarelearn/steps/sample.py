"""Sampling steps: SMD replicas (one, or a batch), COGEF scans and HAL runs, driven by the
labeller or by the potential; every run written as a frames file."""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..chem.molecules import load_prepared_molecule
from ..dataset import Frames, write_frames
from ..jsonio import read_json, write_json
from .common import _progress, log

__all__ = ["smd_replica", "smd_batch_step", "cogef_step", "best_cogef_step", "hal_run"]


def _protocol(smd_cfg: dict):
    """The SMD protocol of the config's ``smd`` section (``batch`` says how the replicas
    run, not how they pull: it is not part of it)."""
    from ..md.dynamics import SMDProtocol

    return SMDProtocol(**{k: v for k, v in smd_cfg.items() if k != "batch"})


def _best_member(ensemble_path, best_json, atoms):
    """(ensemble, index of its best member), the elements checked against ``atoms``."""
    from ..models.files import load_model

    ens = load_model(ensemble_path)
    ens.check_elements(atoms.numbers)
    return ens, int(read_json(best_json)["best_member"])


def smd_replica(molecule_xyz, smd_cfg: dict, seed: int, out, labeller_cfg: dict | None = None,
                ensemble_path=None, best_json=None, sampler: dict | None = None) -> Frames:
    """One SMD replica, driven either by the labeller (reference, frames labelled) or by the
    potential (iteration, frames unlabelled).

    With ``sampler["kind"] == "smd"`` (the paper) the potential is the best member. With
    ``"smd+hal"`` it is the whole committee with the hyperactive-learning bias
    E − τσ (adaptive τ from ``tau_rel`` over ``window`` steps), which drives the pull towards
    configurations the committee disagrees on; the SMD spring is added by the engine."""
    from ..md.dynamics import run_smd

    atoms, g1, g2 = load_prepared_molecule(molecule_xyz)
    if labeller_cfg is not None:
        from ..chem.labellers import make_labeller

        labeller = make_labeller(labeller_cfg["name"], labeller_cfg.get("options") or {})
        calc, label_as, driver = labeller.calculator(), labeller.name, labeller.name
    else:
        from ..models.files import make_calculator

        ens, best = _best_member(ensemble_path, best_json, atoms)
        calc, label_as, driver = make_calculator(ens, member=best), None, f"nnp member {best}"
        if sampler and sampler.get("kind", "smd") == "smd+hal":
            from ..learning.hal import HALCalculator

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
    once per step on all of them (:func:`rarelearn.md.batched_smd.run_smd_batch`). Writes
    ``outs[i]`` for ``seeds[i]``, each file what :func:`smd_replica` writes for that seed
    (same frames to the rounding of the batched model, same extras and attrs, plus
    ``batch_size`` and ``batch_index``; ``wall_seconds`` is the whole batch's)."""
    from ..md.batched_smd import member_evaluator, run_smd_batch

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



def _start_positions(molecule_xyz):
    return None if molecule_xyz is None else load_prepared_molecule(molecule_xyz)[0].positions


def _cogef_calculator(labeller_cfg: dict | None, ensemble_path, best_json, atoms, member: int | None = None):
    """(calculator, label_as, ensemble or None, member): the labeller, or one member of the
    potential (``member``; None: the best one of ``best_json``)."""
    if labeller_cfg is not None:
        from ..chem.labellers import make_labeller

        labeller = make_labeller(labeller_cfg["name"], labeller_cfg.get("options") or {})
        return labeller.calculator(), labeller.name, None, None
    from ..models.files import load_model, make_calculator

    if member is None:
        ens, member = _best_member(ensemble_path, best_json, atoms)
    else:
        ens = load_model(ensemble_path)
        ens.check_elements(atoms.numbers)
        if not 0 <= member < ens.n_members:
            raise ValueError(f"member {member}: the committee {ensemble_path} has {ens.n_members} members")
    return make_calculator(ens, member=member), None, ens, member


def cogef_step(molecule_xyz, cogef_cfg: dict, out_h5, out_json, labeller_cfg: dict | None = None,
               ensemble_path=None, best_json=None, member: int | None = None, pull=None) -> dict:
    """The COGEF profile of the pulled atoms (``pull``, default the first atom of each pulled
    group; a bond's two atoms stretch that bond alone), with the
    labeller (reference: frames labelled, test data) or with one member of the potential
    (``member``, default the best one of ``best_json``; an iteration: the committee's energy
    spread along the path in extras ``uq_sigma``, the member in the summary's ``member``).
    Writes the relaxed images (HDF5) and the profile's summary (JSON)."""
    from ..md.cogef import cogef_profile, cogef_settings
    from ..learning.uq import member_energies

    atoms, g1, g2 = load_prepared_molecule(molecule_xyz)
    calc, label_as, ens, member = _cogef_calculator(labeller_cfg, ensemble_path, best_json, atoms, member)
    t0 = time.time()
    prof = cogef_profile(atoms, calc, (g1[0], g2[0]) if pull is None else tuple(int(a) for a in pull),
                         **cogef_settings(cogef_cfg), label_as=label_as, progress=_progress)
    frames = prof.frames
    summary = prof.summary()
    if ens is not None:
        sig = member_energies(ens, frames).std(axis=0)
        frames.extras["uq_sigma"] = sig
        summary["uq_sigma"] = sig.tolist()
        summary["uq_sigma_max_to_break"] = float(sig[prof.intact].max())
    if ens is not None:
        summary["member"] = member
    summary["driver"] = label_as or f"nnp member {member}"
    summary["wall_seconds"] = time.time() - t0
    write_frames(out_h5, frames)
    write_json(out_json, summary)
    log.info("COGEF (%s): E_max %.4f eV at Δ = %.3f Å, F_max %.3f eV/Å, %s, %d images, %.1f s",
             summary["driver"], prof.e_max, prof.extension_at_max, prof.f_max,
             f"broke {prof.brk.label} at Δ = {prof.break_extension:.3f} Å" if prof.broke else "NO break",
             len(frames), summary["wall_seconds"])
    return summary


def best_cogef_step(best_json, member_profiles: Sequence, member_frames: Sequence, out_h5, out_json) -> int:
    """The best member's COGEF profile, picked from every member's (``cogef.members: all``):
    copies ``member_frames[b]``/``member_profiles[b]`` (b = the best member of ``best_json``;
    both lists in member order) to ``out_h5``/``out_json``, each written whole or not at all.
    Returns b."""
    import shutil

    from ..atomic import atomic_path

    best = int(read_json(best_json)["best_member"])
    if not 0 <= best < len(member_profiles) or len(member_frames) != len(member_profiles):
        raise ValueError(f"best member {best} ({best_json}): {len(member_profiles)} member profiles given")
    prof = read_json(member_profiles[best])
    if prof.get("member") != best:
        raise ValueError(f"{member_profiles[best]} is member {prof.get('member')}'s profile, not member {best}'s")
    with atomic_path(out_h5) as tmp:
        shutil.copyfile(member_frames[best], tmp)
    write_json(out_json, prof)
    log.info("COGEF: the best member's profile is member %d's (%s)", best, member_profiles[best])
    return best


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
    from ..md.dynamics import run_md
    from ..learning.hal import HALCalculator, HALMonitor, hand_over
    from ..learning.hal_stats import StopCriterion
    from ..models.files import load_model, make_calculator

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
    fired, pick, why = hand_over(frames, sampler_cfg["fallback"])
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


