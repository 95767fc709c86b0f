"""Many SMD replicas of one potential for the price of one: the model is evaluated once per
MD step on all of them.

How it works
------------
A replica here is exactly the run :func:`rarelearn.md.dynamics.run_smd` makes for its seed
(same LAMMPS commands: ``fix nve``, a Berendsen thermostat and a ``fix smd cvel`` spring
per replica, the same blow-up rules, record and ``attrs``); only the forces come from one
batched call, ``evaluate(positions (B, N, 3) Å) -> (energies (B,) eV, forces (B, N, 3)
eV/Å)``, per step for every replica still running.

* Up to :data:`~rarelearn.md.engine.MAX_COPIES` (10) replicas share one LAMMPS instance as
  stacked copies of the molecule (LAMMPS allows 32 atom groups; each copy needs three:
  itself for its thermostat, and its two pulled groups for its spring). The copies sit
  on the same coordinates and never interact: there is no pair style, and each copy's
  forces are its own row of the batch.
* More replicas run in several such instances, each in its own thread, in lock-step
  (:class:`_Lockstep`): the threads take turns, one at a time (LAMMPS and MPI are never
  entered by two threads at once), each running its instance until its next force call;
  the thread whose call completes the round (every running instance has asked) evaluates
  the whole batch once and hands each instance its rows.
* Each replica's initial velocities are those ``velocity all create`` gives the molecule
  alone for its seed, so replica k of a batch follows the trajectory it follows alone, up
  to the rounding of the batched model (bitwise with a force function whose rows do not
  depend on the batch, e.g. an analytic potential).
* A replica that blows up (the rules of :mod:`rarelearn.md.dynamics`) stops alone: its frames
  so far are kept with its ``stop_reason``, it is no longer evaluated or recorded (its
  atoms drift, without model forces, under its own thermostat and spring), and the others
  go on. A failing batched call (an exception) stops every replica it was evaluating,
  like a failing calculator stops a lone run; a LAMMPS error stops the replicas of that
  instance.

Why LAMMPS and not a vectorised integrator: the replicas keep the reference's engine, fix
smd and thermostat to the bit, and the measured cost outside the model is small next to
the model's (``benchmarks/smd_batch.py``, ``benchmarks/README.md``).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Sequence

import numpy as np

from ..dataset import Frames
from .engine import MAX_COPIES, _Engine
from .blowup import BlowUpRules
from .dynamics import SMDProtocol, _check_groups, _smd

__all__ = ["run_smd_batch", "member_evaluator", "split_batch"]

log = logging.getLogger(__name__)

Evaluate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def split_batch(n_replicas: int, per_instance: int = MAX_COPIES) -> list[int]:
    """Replicas per LAMMPS instance: as few instances as ``per_instance`` allows, sizes
    as even as possible (e.g. 64 -> seven instances of 10, 9, 9, 9, 9, 9, 9)."""
    if n_replicas < 1:
        raise ValueError("need at least one replica")
    if not 1 <= per_instance <= MAX_COPIES:
        raise ValueError(f"per_instance must be 1..{MAX_COPIES}, got {per_instance}")
    k = -(-n_replicas // per_instance)
    base, extra = divmod(n_replicas, k)
    return [base + (i < extra) for i in range(k)]


class _Lockstep:
    """Runs ``n`` bodies in threads, one at a time, and serves their force calls in rounds.

    Only the thread holding the turn runs (a semaphore per thread passes it on), so LAMMPS
    is never entered concurrently. A body's call to :meth:`client` submits its positions
    and passes the turn to the next thread that has not yet submitted in this round; when
    every running body has submitted, the submitting thread evaluates the concatenated
    batch once and the round starts again in order. A body that ends leaves the rounds.
    """

    def __init__(self, evaluate: Evaluate, n: int) -> None:
        self.evaluate = evaluate
        self.turn = [threading.Semaphore(0) for _ in range(n)]
        self.active = list(range(n))
        self.waiting: dict[int, np.ndarray] = {}
        self.results: dict[int, object] = {}
        self.errors: dict[int, BaseException] = {}
        self.batch_calls = 0

    def client(self, j: int) -> Evaluate:
        def evaluate(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            self.waiting[j] = np.asarray(pos)
            self._hand_on(j)
            res = self.results.pop(j)
            if isinstance(res, BaseException):
                raise res
            return res
        return evaluate

    def _next(self, j: int) -> int | None:
        """Who runs after j: the next running thread (cyclically) that has not submitted;
        if there is none, the round is complete: evaluate it and start the next round."""
        pending = [i for i in self.active if i not in self.waiting]
        if not pending and self.waiting:
            self._evaluate_round()
            pending = list(self.active)
        if not pending:
            return None
        later = [i for i in pending if i > j]
        return later[0] if later else pending[0]

    def _hand_on(self, j: int) -> None:
        nxt = self._next(j)
        if nxt is not None and nxt != j:
            self.turn[nxt].release()
            self.turn[j].acquire()

    def _evaluate_round(self) -> None:
        order = [i for i in self.active if i in self.waiting]
        sizes = [len(self.waiting[i]) for i in order]
        try:
            e, f = self.evaluate(np.concatenate([self.waiting[i] for i in order]))
            e, f = np.asarray(e), np.asarray(f)
            if e.shape[:1] != (sum(sizes),) or f.shape[:1] != (sum(sizes),):
                raise ValueError(f"batched evaluation returned {e.shape[:1]} energies and forces of shape "
                                 f"{f.shape} for {sum(sizes)} structures")
            start = 0
            for i, s in zip(order, sizes):
                self.results[i] = (e[start:start + s], f[start:start + s])
                start += s
        except Exception as exc:
            for i in order:
                self.results[i] = exc
        self.batch_calls += 1
        self.waiting.clear()

    def run(self, bodies: Sequence[Callable[[Evaluate], object]]) -> list:
        """Run ``body_j(evaluate_j)`` for every j; their return values, in order."""
        out: list = [None] * len(bodies)

        def thread(j: int) -> None:
            self.turn[j].acquire()
            try:
                out[j] = bodies[j](self.client(j))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                self.errors[j] = exc
            finally:
                self.active.remove(j)
                self.waiting.pop(j, None)
                nxt = self._next(j)
                if nxt is not None:
                    self.turn[nxt].release()

        threads = [threading.Thread(target=thread, args=(j,), name=f"smd-batch-{j}", daemon=True)
                   for j in range(len(bodies))]
        for t in threads:
            t.start()
        self.turn[0].release()
        for t in threads:
            t.join()
        if self.errors:
            raise self.errors[min(self.errors)]
        return out


def run_smd_batch(atoms, evaluate: Evaluate, group1: list[int], group2: list[int], protocol: SMDProtocol,
                  seeds: Sequence[int], label_as: str | None = None,
                  progress: Callable[[str], None] | None = None, *, rules: BlowUpRules | None = None,
                  per_instance: int = MAX_COPIES) -> list[Frames]:
    """Steered MD of one molecule for every seed at once (see the module docstring).

    Parameters
    ----------
    atoms : ase.Atoms, the starting structure (not modified)
    evaluate : batched force function, positions (B, N, 3) Å -> energies (B,) eV and forces
        (B, N, 3) eV/Å, row b for structure b (e.g. :func:`member_evaluator`)
    group1, group2, protocol, label_as, rules : as in :func:`rarelearn.md.dynamics.run_smd`
    seeds : one velocity seed per replica (distinct or not: equal seeds give equal runs)
    progress : optional callable receiving a one-line status about every 10 % of the run
    per_instance : replicas per LAMMPS instance (1..10); the batch is split evenly

    Returns
    -------
    list of Frames, one per seed in order, each what ``run_smd`` returns for that seed
    (same extras and attrs) plus attrs ``batch_size`` (replicas in the batch) and
    ``batch_index`` (this replica's place in it); ``engine`` says how the batch ran and
    ``calculator_calls`` counts the batched calls this replica took part in.
    """
    p = protocol
    seeds = [int(s) for s in seeds]
    g1, g2 = _check_groups(len(atoms), group1, group2)
    rules = rules or BlowUpRules()
    sizes = split_batch(len(seeds), per_instance)
    chunks, start = [], 0
    for s in sizes:
        chunks.append(seeds[start:start + s])
        start += s

    def body(j: int, chunk: list[int]) -> Callable[[Evaluate], list[Frames]]:
        def run(ev: Evaluate) -> list[Frames]:
            label = f"SMD batch of {len(seeds)} (seeds {seeds[0]}..{seeds[-1]})"
            engine = _Engine(atoms, None, p.timestep_fs, rules, g1 + g2, progress if j == 0 else None, label,
                             copies=len(chunk), evaluate=ev)
            try:
                return _smd(engine, p, g1, g2, chunk, label_as)
            finally:
                engine.close()
        return run

    bodies = [body(j, c) for j, c in enumerate(chunks)]
    if len(bodies) == 1:
        per_chunk = [bodies[0](evaluate)]
    else:
        per_chunk = _Lockstep(evaluate, len(bodies)).run(bodies)
    out = [fr for frames in per_chunk for fr in frames]
    how = f", batch of {len(seeds)} in {len(sizes)} instance(s) of {max(sizes)} or fewer copies"
    for i, fr in enumerate(out):
        fr.attrs["engine"] += how
        fr.attrs["batch_size"] = len(seeds)
        fr.attrs["batch_index"] = i
    return out


def member_evaluator(model, member: int, numbers) -> Evaluate:
    """The batched force function of one committee member: a copy of member ``member`` of
    ``model`` (either family, :meth:`rarelearn.models.committee.CommitteeBase.member`), evaluated on
    all structures in one forward and one backward pass.

    numbers : (N,) atomic numbers of the structures. Returns ``evaluate(positions (B, N, 3)
    Å) -> (energies (B,) eV, forces (B, N, 3) eV/Å)``.
    """
    one = model.member(int(member))
    numbers = np.asarray(numbers, dtype=np.int64)
    one.check_elements(numbers)

    def evaluate(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e, f = one.energies_forces(numbers, pos, batch_size=max(1, len(pos)))
        return e[0], f[0]

    return evaluate
