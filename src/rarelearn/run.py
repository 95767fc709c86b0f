"""Run the potential: MD or steered MD of your molecule on LAMMPS, from the command line.

::

    python -m rarelearn.run smd --potential results/potential --structure my.xyz --pull 0 17
    python -m rarelearn.run md  --potential results/potential --structure my.xyz --frames 2000 --temperature 300

Both use the workflow's own LAMMPS drivers (:func:`rarelearn.md.dynamics.run_smd`,
:func:`rarelearn.md.dynamics.run_md`: the LAMMPS Python module, ``fix external`` forces from
the potential's ASE calculator, :func:`rarelearn.potential.load_potential`), print a
progress line about every 10 % of the run and a last line with what happened, and write

``--out`` (default ``smd.h5`` / ``md.h5``)
    the frames, in the rarelearn HDF5 layout (:mod:`rarelearn.dataset`; h5py reads it):
    ``/positions`` (F, N, 3) Å, ``/numbers``, and per frame under ``/extras``: ``step``,
    ``time_fs``, ``potential_energy`` (eV), ``kinetic_energy`` (eV), for SMD also
    ``spring_distance``, ``spring_reference`` (Å), ``pull_force`` (eV/Å), ``work`` (eV);
    and the committee's ``energy_std`` (eV) and ``force_std`` (eV/Å) with
    ``outside_trained_range`` (1.0 where a spread exceeds the card's bounds). The run's
    settings and ``stop_reason`` are attributes of the file. ``/energy`` and ``/forces``
    are NaN: they hold reference labels, which a potential's run does not have.
``--xyz`` (optional)
    the same frames as extended XYZ (ASE, OVITO, VMD read it).

SMD pulls the centres of mass of two atom groups apart with a moving spring (LAMMPS
``fix smd``); ``--pull I J`` pulls atoms I and J (0-based indices into the structure
file), ``--group1``/``--group2`` pull groups. The protocol defaults to the one the
campaign used (the card's ``smd_protocol``); every setting can be given.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np

__all__ = ["main", "run_potential"]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _spreads(calc, frames, batch_size: int = 128):
    from .potential import committee_spread

    if len(frames) == 0:
        return np.zeros(0), np.zeros(0)
    e, f = calc.model.energies_forces(frames.numbers, frames.positions, batch_size=batch_size)
    return committee_spread(e, f)


def run_potential(mode: str, potential, structure, out, *, pull: Sequence[int] | None = None,
                  group1: Sequence[int] | None = None, group2: Sequence[int] | None = None,
                  seed: int = 0, member="best", xyz=None, progress=_say, **settings):
    """One MD (``mode="md"``) or SMD (``mode="smd"``) run with the potential in ``potential``.

    ``settings``: for SMD any field of :class:`rarelearn.md.dynamics.SMDProtocol` (default: the
    card's protocol); for MD ``frames``, ``temperature_K``, ``timestep_fs``,
    ``record_every``, ``equilibration_steps``, ``thermostat``. Returns the Frames written.
    """
    from ase.io import read

    from .dataset import write_extxyz, write_frames
    from .md.dynamics import SMDProtocol, run_md, run_smd
    from .potential import load_potential

    calc = load_potential(potential, member=member)
    atoms = read(structure)
    start = atoms.positions.copy()  # the bonds that can break are those of the structure given
    atoms.calc = None
    calc.model.check_elements(atoms.numbers)
    card = calc.card
    t0 = time.time()
    if mode == "smd":
        if pull is not None:
            group1, group2 = [int(pull[0])], [int(pull[1])]
        if not group1 or not group2:
            raise ValueError("smd needs --pull I J (or --group1 and --group2)")
        proto = dict(card.get("smd_protocol") or {})
        proto.update({k: v for k, v in settings.items() if v is not None})
        known = set(SMDProtocol.__dataclass_fields__)
        protocol = SMDProtocol(**{k: v for k, v in proto.items() if k in known})
        progress(f"SMD of {atoms.get_chemical_formula()} with {potential}: pulling {list(group1)} from "
                 f"{list(group2)} at {protocol.velocity} Å/ps, k = {protocol.spring_k} eV/Å², "
                 f"{protocol.relax_steps} + {protocol.pull_steps} steps of {protocol.timestep_fs} fs")
        frames = run_smd(atoms, calc, list(group1), list(group2), protocol, seed=seed, progress=progress)
    elif mode == "md":
        md = {"frames": 1000, "temperature_K": 300.0, "timestep_fs": 0.5, "record_every": 1,
              "equilibration_steps": 0, "thermostat": "berendsen"}
        md.update({k: v for k, v in settings.items() if v is not None and k in md})
        progress(f"MD of {atoms.get_chemical_formula()} with {potential}: {md['frames']} frames every "
                 f"{md['record_every']} steps of {md['timestep_fs']} fs at {md['temperature_K']} K ({md['thermostat']})")
        frames = run_md(atoms, calc, temperature_K=md["temperature_K"], n_frames=md["frames"],
                        timestep_fs=md["timestep_fs"], seed=seed, record_every=md["record_every"],
                        equilibration_steps=md["equilibration_steps"], thermostat=md["thermostat"],
                        progress=progress)
    else:
        raise ValueError(f"mode must be 'md' or 'smd', got {mode!r}")
    es, fs = _spreads(calc, frames)
    frames.extras["energy_std"] = es
    frames.extras["force_std"] = fs
    e_max, f_max = calc.bounds or (None, None)
    outside = np.zeros(len(frames), dtype=bool)
    if e_max is not None:
        outside |= es > e_max
    if f_max is not None:
        outside |= fs > f_max
    frames.extras["outside_trained_range"] = outside.astype(np.float64)
    frames.attrs.update({"potential": str(potential), "structure": str(structure), "member": str(member),
                         "potential_iteration": card["iteration"]["chosen"],
                         "ensemble_sha256": card["files"]["ensemble.pt"]["sha256"]})
    write_frames(out, frames)
    if xyz is not None:
        write_extxyz(xyz, frames)
    last = f"{mode.upper()} done in {time.time() - t0:.1f} s: {len(frames)} frames ({frames.attrs.get('stop_reason')})"
    if mode == "smd" and len(frames):
        from .chem.barrier import read_replica

        # the barrier as the campaign reads it: max W up to the break (work after it is not barrier)
        rec = read_replica(frames, start_positions=start)
        if not rec["pull_began"]:
            last += ", the pull never began (blew up during the relaxation: its frames are kept, no barrier)"
        elif rec.get("broke"):
            last += (f", broke {rec['broken_label']} at {rec['break_distance']:.2f} Å, E_a (max work before the "
                     f"break) {rec['ea']:.3f} eV, {rec['post_break_work']:.3f} eV of work after it")
        else:
            last += f", no bond broke (max work {frames.extras['work'].max():.3f} eV, no barrier)"
    last += f", {int(outside.sum())} frames outside the trained range; wrote {out}"
    progress(last)
    return frames


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rarelearn.run", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--potential", default="results/potential", help="potential folder (default %(default)s)")
    common.add_argument("--structure", required=True, help="structure file ASE reads (xyz, extxyz, pdb, ...)")
    common.add_argument("--out", help="output HDF5 file (default smd.h5 / md.h5)")
    common.add_argument("--xyz", help="also write the frames as extended XYZ")
    common.add_argument("--seed", type=int, default=0, help="velocity seed")
    common.add_argument("--member", default="best",
                        help="'best' (default: the card's best member), 'mean' (committee mean) or an index")
    common.add_argument("--timestep", dest="timestep_fs", type=float, help="fs")
    common.add_argument("--temperature", dest="temperature_K", type=float, help="K")
    common.add_argument("--record-every", dest="record_every", type=int)
    common.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    s = sub.add_parser("smd", parents=[common], help="steered MD: pull two atoms (or groups) apart")
    s.add_argument("--pull", nargs=2, type=int, metavar=("I", "J"), help="0-based indices of the two pulled atoms")
    s.add_argument("--group1", type=int, nargs="+", help="first pulled group (instead of --pull)")
    s.add_argument("--group2", type=int, nargs="+", help="second pulled group")
    s.add_argument("--steps", dest="pull_steps", type=int, help="pull steps (default: the campaign's)")
    s.add_argument("--relax-steps", dest="relax_steps", type=int)
    s.add_argument("--velocity", type=float, help="spring velocity, Å/ps")
    s.add_argument("--spring-k", dest="spring_k", type=float, help="eV/Å²")
    m = sub.add_parser("md", parents=[common], help="MD (Berendsen, Langevin or NVE)")
    m.add_argument("--frames", type=int, help="frames to record (default 1000)")
    m.add_argument("--equilibration", dest="equilibration_steps", type=int)
    m.add_argument("--thermostat", choices=["berendsen", "langevin", "nve"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    member = args.member
    if member not in ("best", "mean"):
        member = int(member)
    settings = {k: getattr(args, k, None) for k in ("timestep_fs", "temperature_K", "record_every", "pull_steps",
                                                    "relax_steps", "velocity", "spring_k", "frames",
                                                    "equilibration_steps", "thermostat")}
    settings = {k: v for k, v in settings.items() if v is not None}
    out = args.out or f"{args.mode}.h5"
    try:
        run_potential(args.mode, args.potential, args.structure, out, pull=getattr(args, "pull", None),
                      group1=getattr(args, "group1", None), group2=getattr(args, "group2", None), seed=args.seed,
                      member=member, xyz=args.xyz, **settings)
    except (ValueError, OSError) as exc:
        _say(f"error: {exc}")
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
