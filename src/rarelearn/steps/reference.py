"""Reference steps: the prepared molecule and isolated-atom energies, the labelled MD
set, the reference barrier from the labeller's SMD replicas, the reference COGEF scan."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from ..chem.barrier import barrier_of_files
from ..chem.molecules import load_prepared_molecule
from ..dataset import Frames, read_frames, write_frames
from ..jsonio import write_json
from .common import _progress, log
from .sample import _start_positions, cogef_step

__all__ = ["prepare_molecule", "reference_md", "NoBreakError", "reference_barrier", "reference_cogef"]


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


def reference_barrier(replica_paths: Sequence, out, molecule_xyz=None) -> dict:
    """E_a of the reference: mean ± standard error over the replicas that broke (eV).

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
    write_json(out, rec)
    log.info("reference E_a = %.4f ± %.4f eV over %d replicas (read up to the break; bonds broken: %s)",
             rec["ea_mean"], rec["ea_stderr"], rec["n_replicas"], ", ".join(rec["per_bond"]))
    return rec


def reference_cogef(molecule_xyz, cogef_cfg: dict, labeller_cfg: dict, out_h5, out_json) -> dict:
    """The labeller's COGEF profile; one that never breaks stops the campaign (one line)."""
    summary = cogef_step(molecule_xyz, cogef_cfg, out_h5, out_json, labeller_cfg=labeller_cfg)
    if not summary["broke"]:
        for f in (out_h5, out_json):
            Path(f).unlink(missing_ok=True)
        raise NoBreakError(f"the reference COGEF scan broke no bond up to Δ = {summary['extension'][-1]:.2f} Å: "
                           f"raise cogef.max_extension")
    return summary


