"""Reference steps: the prepared molecule and isolated-atom energies, the labelled MD
set, the reference barrier from the labeller's SMD replicas (run in rounds until its
standard error is small enough, :func:`reference_round`), the reference COGEF scan."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence


from ..chem.barrier import barrier_of_files, rounds_to_go
from ..chem.molecules import load_prepared_molecule
from ..dataset import Frames, read_frames, write_frames
from ..jsonio import write_json
from ..units import ev_to_kcal, kcal_to_ev
from .common import _progress, log
from .sample import _start_positions, cogef_step

__all__ = ["prepare_molecule", "reference_md", "empty_dataset", "NoBreakError", "fixed_rounds", "rounds_record", "reference_round",
           "reference_barrier", "reference_cogef", "no_break_message"]


def prepare_molecule(molecule_cfg: dict, labeller_cfg: dict, out_xyz, out_atom_energies) -> None:
    """Build/read the molecule (relaxed with the labeller) and the isolated-atom energies."""
    from ..chem.labellers import make_labeller
    from ..chem.molecules import load_molecule, write_prepared_molecule

    spec = {k: v for k, v in molecule_cfg.items() if k != "elements" and v is not None}
    if molecule_cfg.get("structure"):
        spec.pop("alkane", None)
    else:
        spec.pop("structure", None)
        spec.pop("pull", None)
    mol = load_molecule(spec, elements=molecule_cfg["elements"])
    write_prepared_molecule(mol, out_xyz)
    labeller = make_labeller(labeller_cfg["name"], labeller_cfg.get("options") or {})
    energies = labeller.isolated_atom_energies(list(molecule_cfg["elements"]))
    write_json(out_atom_energies, {"labeller": labeller.name, "unit": "eV", "energies": energies})
    log.info("molecule %s: %d atoms, pulled groups %s and %s", mol.name, len(mol.atoms), mol.group1, mol.group2)


def reference_md(molecule_xyz, reference_cfg: dict, smd_cfg: dict, labeller_cfg: dict, out) -> Frames:
    """The labelled equilibrium set: NVT MD with the labeller (source ``md``)."""
    from ..md.dynamics import run_md
    from ..chem.labellers import make_labeller

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


class NoBreakError(ValueError):
    """No reference SMD replica (or COGEF scan) broke a bond: there is no barrier to learn."""


def empty_dataset(molecule_xyz, out, data=None) -> Frames:
    """Iteration 0's data set of a molecule without an MD set (``md_frames: 0`` in a family):
    no frames, its atoms; its selections fill it. With ``data`` (the entry's labelled data
    file, :func:`rarelearn.steps.train.start_data`) its usable frames instead."""
    atoms, _, _ = load_prepared_molecule(molecule_xyz)
    if data is not None:
        from .train import start_data

        frames = start_data(data, atoms.numbers)
    else:
        frames = Frames.empty(atoms.numbers)
        log.info("iteration 0 data set of %s: none (no MD set); its selections fill it", molecule_xyz)
    write_frames(out, frames)
    return frames


def fixed_rounds(replicas: int) -> dict:
    """The rounds of a fixed count: one round of ``replicas`` (no target)."""
    return {"per_round": int(replicas), "target_stderr_kcal": None, "max_replicas": int(replicas)}


def rounds_record(rec: dict, rounds: dict) -> dict:
    """How a barrier record (:func:`rarelearn.chem.barrier.barrier_of_files`) stands
    against the rounds' stopping rule (:func:`rarelearn.chem.barrier.rounds_to_go`).

    Parameters
    ----------
    rec : the record of the replicas run so far (``ea_values`` eV, ``replicas``)
    rounds : ``per_round`` (replicas per round), ``target_stderr_kcal`` (None: a fixed
        count) and ``max_replicas`` (the config's ``reference`` keys; :func:`fixed_rounds`)

    Returns
    -------
    dict: ``replicas_run``, ``ea_stderr_kcal``, ``per_round``, ``target_stderr_kcal``,
    ``max_replicas``, ``rounds_to_go`` (estimated rounds still needed, 0 = stop),
    ``reason`` (:class:`rarelearn.chem.barrier.RoundsToGo`), ``replicas_needed`` (the
    estimate of replicas in all, or None) and ``target_met`` (None without a target).
    """
    target = rounds.get("target_stderr_kcal")
    run = len(rec["replicas"])
    go = rounds_to_go(rec["ea_values"], run, int(rounds["per_round"]),
                      None if target is None else kcal_to_ev(float(target)), int(rounds["max_replicas"]))
    return {"replicas_run": run, "ea_stderr_kcal": ev_to_kcal(go.stderr), "per_round": int(rounds["per_round"]),
            "target_stderr_kcal": target, "max_replicas": int(rounds["max_replicas"]), "rounds_to_go": go.rounds,
            "reason": go.reason, "replicas_needed": go.replicas_needed,
            "target_met": None if target is None else go.reason == "target_met"}


def _target_text(target) -> str:
    return "none" if target is None else f"{target:g}"


def reference_round(replica_paths: Sequence, out, round_index: int, rounds: dict, molecule_xyz=None) -> dict:
    """Whether the reference needs another round of SMD replicas: the decision after round
    ``round_index`` (0-based), from every replica of rounds 0..round_index, each read up to
    its break as :func:`reference_barrier` reads it.

    Writes ``out`` (JSON, atomically): :func:`rounds_record` plus ``round``, ``n_replicas``
    (replicas with a barrier), ``ea_mean``/``ea_stderr`` (eV), ``replicas`` and ``more``
    (true: run round ``round_index`` + 1). A round without any barrier decides no more: the
    barrier step then says what to lengthen (:class:`NoBreakError`).
    """
    rec = barrier_of_files(replica_paths, start_positions=_start_positions(molecule_xyz))
    state = rounds_record(rec, rounds)
    decision = {"round": int(round_index), "more": state["rounds_to_go"] > 0, **state,
                "n_replicas": rec["n_replicas"], "ea_mean": rec["ea_mean"], "ea_stderr": rec["ea_stderr"],
                "replicas": rec["replicas"]}
    write_json(out, decision)
    log.info("reference round %d: %d replicas run, %d with a barrier, E_a standard error %.3f kcal/mol "
             "(target %s kcal/mol): %s", round_index, state["replicas_run"], rec["n_replicas"],
             state["ea_stderr_kcal"], _target_text(state["target_stderr_kcal"]),
             f"another round ({state['reason']}; about {state['rounds_to_go']} more to the target)"
             if decision["more"] else f"no more rounds ({state['reason']})")
    return decision


def reference_barrier(replica_paths: Sequence, out, molecule_xyz=None, rounds: dict | None = None,
                      decisions: Sequence = ()) -> dict:
    """E_a of the reference: mean ± standard error over the replicas that broke (eV).

    ``rounds`` says how the replicas were run (:func:`rounds_record`; None: one round of
    them all, :func:`fixed_rounds`) and ``decisions`` are the files of the rounds'
    decisions (:func:`reference_round`); both are recorded: ``replicas_run``,
    ``ea_stderr_kcal`` and ``rounds`` (the stopping rule's state, ``count`` the rounds run,
    ``decisions`` their files).

    Raises :class:`NoBreakError` (one line: what to lengthen) when no replica broke."""
    rec = barrier_of_files(replica_paths, start_positions=_start_positions(molecule_xyz))
    if rec["n_replicas"] == 0:
        reach = max(float(read_frames(p).extras["spring_distance"][-1]) for p in replica_paths)
        raise NoBreakError(
            f"no reference SMD replica broke a bond ({len(replica_paths)} replicas, spring distance reached "
            f"{reach:.2f} Å): lengthen the pull (smd.pull_steps, or smd.velocity)")
    if rec["unbroken"]:
        log.warning("reference: %d replica(s) did not break and have no barrier: %s", rec["unbroken"],
                    ", ".join(rec["unbroken_replicas"]))
    state = rounds_record(rec, rounds if rounds is not None else fixed_rounds(len(replica_paths)))
    rec["replicas_run"] = state.pop("replicas_run")
    rec["ea_stderr_kcal"] = state.pop("ea_stderr_kcal")
    state.pop("rounds_to_go")
    rec["rounds"] = {"count": -(-rec["replicas_run"] // state["per_round"]), **state,
                     "decisions": [str(p) for p in decisions]}
    write_json(out, rec)
    log.info("reference E_a = %.4f ± %.4f eV over %d replicas (read up to the break; bonds broken: %s); "
             "%d replicas run in %d round(s), standard error %.3f kcal/mol (target %s kcal/mol: %s)",
             rec["ea_mean"], rec["ea_stderr"], rec["n_replicas"], ", ".join(rec["per_bond"]), rec["replicas_run"],
             rec["rounds"]["count"], rec["ea_stderr_kcal"], _target_text(state["target_stderr_kcal"]), state["reason"])
    return rec


def reference_cogef(molecule_xyz, cogef_cfg: dict, labeller_cfg: dict, out_h5, out_json) -> dict:
    """The labeller's COGEF profile; one that never breaks stops the campaign (one line)."""
    summary = cogef_step(molecule_xyz, cogef_cfg, out_h5, out_json, labeller_cfg=labeller_cfg)
    if not summary["broke"]:
        for f in (out_h5, out_json):
            Path(f).unlink(missing_ok=True)
        raise NoBreakError(no_break_message(summary, molecule_xyz))
    return summary


def no_break_message(summary: dict, molecule_xyz=None) -> str:
    """Why a reference COGEF scan ended before any bond broke, and what to change: the scan
    reached ``cogef.max_extension``, or the labeller failed on an image (an SCF that did not
    converge; undecane under GFN2-xTB at Δ 3.5 Å, 250 cycles), which a larger extent would
    not mend."""
    where = f" of {molecule_xyz}" if molecule_xyz is not None else ""
    last = summary["extension"][-1]
    reason = summary.get("stop_reason", "max_extension")
    if reason == "max_extension":
        return f"the reference COGEF scan{where} broke no bond up to Δ = {last:.2f} Å: raise cogef.max_extension"
    return (f"the reference COGEF scan{where} stopped at Δ = {last:.2f} Å before any bond broke: the labeller's "
            f"{reason}; give the labeller more room (labeller.options, e.g. max_iterations or "
            f"electronic_temperature) or a smaller cogef.step")


