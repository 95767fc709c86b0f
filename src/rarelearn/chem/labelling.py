"""Labelling a batch safely: every frame in its own process with a time limit (for a
retry after a crash), and the screen that keeps unphysical geometries out of training."""
from __future__ import annotations

import logging
import time

import numpy as np

from ..dataset import STATUS_SCREENED, Frames
from .geometry import min_pair_distance

__all__ = ["label_batch", "label_isolated", "labeller_steps", "screen_labels", "MAX_LABEL_FORCE",
           "MIN_LABEL_DISTANCE"]

log = logging.getLogger("rarelearn")


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


def label_batch(labeller, frames: Frames, attempt: int = 1, frame_timeout_s: float | None = None,
                screen: dict | None = None) -> Frames:
    """A labelled copy of ``frames``: frames that fail are kept with status ``failed``, frames
    of unphysical geometries (``screen``: ``max_force`` eV/Å, ``min_distance`` Å; the
    schema's ``labelling`` keys, default 50 eV/Å and 0.5 Å) with status ``screened``
    (:func:`screen_labels`); neither is trained on. attrs ``screened`` (one reason per
    screened frame) and ``screen`` (the thresholds).

    On a retry (``attempt`` > 1, after the job died or ran out of time) every frame is
    labelled in its own process with ``frame_timeout_s`` (:func:`label_isolated`), so one
    bad frame cannot take the batch down again.
    """
    screen = {"max_force": MAX_LABEL_FORCE, "min_distance": MIN_LABEL_DISTANCE, **(screen or {})}
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
    return labelled


def labeller_steps(labeller, frames: Frames, pull) -> Frames:
    """The way from a potential's COGEF images towards the labeller's branch (sampler option
    ``labeller_steps``): each frame with extras ``labeller_steps`` N > 1 relaxed N − 1 BFGS
    steps by the labeller under :class:`ase.constraints.FixBondLength` of the pulled atoms
    ``pull``; the structure after every step is returned, unlabelled (source
    ``cogef-steps``, the frame's iteration), for labelling like any selected frame. A
    calculation that fails ends that frame's steps (the structures before it are kept); None
    of this raises."""
    from ase import Atoms
    from ase.constraints import FixBondLength
    from ase.optimize import BFGS

    steps = np.asarray(frames.extras.get("labeller_steps", np.zeros(len(frames))))
    positions, iterations = [], []
    i, j = (int(a) for a in pull)
    for k in np.flatnonzero(steps > 1):
        a = Atoms(numbers=frames.numbers, positions=frames.positions[k])
        a.calc = labeller.calculator()
        a.set_constraint(FixBondLength(i, j))
        opt = BFGS(a, logfile=None)
        for _ in range(int(steps[k]) - 1):
            try:
                opt.run(fmax=0.0, steps=1)
            except Exception as exc:  # a labeller failure ends this image's way, not the batch
                log.warning("labeller steps from frame %d stopped: %s", k, f"{type(exc).__name__}: {exc}")
                break
            positions.append(a.positions.copy())
            iterations.append(int(frames.iteration[k]))
    n = len(positions)
    return Frames(numbers=frames.numbers, positions=np.array(positions).reshape(n, len(frames.numbers), 3),
                  source=["cogef-steps"] * n, iteration=iterations, extras={"labeller_steps": np.zeros(n)})
