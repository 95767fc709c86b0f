"""When a trajectory has left physical territory: the blow-up rules of every MD and SMD run.

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
   time: an atom with no covalent partner (bond criterion of :mod:`rarelearn.chem.geometry`, 1.3 ×
   the sum of covalent radii: C–H 1.39 Å, N–H 1.33 Å, O–H 1.26 Å) that is not one of the
   pulled atoms. Checked every ``check_every`` (10) steps. X–H bonds vibrate with periods
   of 9–11 fs (O–H to C–H), so a thermal stretch never lasts 100 fs; a hydrogen that stays
   unbound that long has come off, the usual signature of a potential driven outside its data.

Every rule holds for any elements: distances and forces need none, and bonds come from the
covalent radii of the two atoms.

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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..chem.geometry import DEFAULT_BOND_SCALE, bond_matrix

__all__ = ["BlowUpRules", "BlowUp", "check_blowup"]


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


