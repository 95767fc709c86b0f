"""The fragments of a broken pull moved apart (``selection.fragment_frames``).

Past the break, the potential's pulls hold the two fragments 4.0–4.7 Å apart (hexane, the
default pull), inside the 5.2 Å radial cutoff of the ANI networks, where a member's atoms
still see the other fragment. The labels there are few, and a committee fitted to them can
agree on an attraction that the reference does not have: measured on the hexane campaign
(``benchmarks/post_break.py``), all three members of one iteration pulled the fragments
together with 0.3–0.5 eV/Å where GFN2-xTB's force was below 0.01 eV/Å, and their spread past
the break had fallen to 1.4–2 times the UQ threshold, so the threshold no longer singles
those frames out. These frames do not wait for the committee to disagree: the frame of
each pull that broke at its break (the broken bond just past its break length, 3.04 Å for
C–C), its fragment on the far side of the broken bond translated rigidly along that bond
until the bond is ``reach`` Å long (past the cutoff, where the reference's force is zero and
its energy the two fragments'), in even steps. Labelled like any selected frame.

They start at the break, not at the pull's last frame: started at the last frames (4.7 Å
apart), two iterations of the hexane campaign left the members disagreeing in sign about the
fragments' force at 4.0–4.3 Å, short of every fragment frame.

**The snap** (``selection.snap_frames``, :func:`snap_frames`): the frames of a pull from the
last one in which the bond that breaks is still a bond (1.3 × its covalent radii, 1.98 Å for
C–C; :func:`rarelearn.chem.breaks.snap_start`) to its break (3.04 Å), passed in a few tens of
fs while the rest of the chain is still stretched. The SMD barrier is the work up to the
break, and 0.59 eV of hexane's 7.6 eV is done during the snap (GFN2-xTB, 48 pulls, σ 0.08
eV). Measured on the hexane branch campaign's iteration-2 potential (COGEF ΔE_max −0.18
kcal/mol, SMD ΔE_a −5.6 ± 0.6, 32 pulls): +2.5 kcal/mol of work up to the snap, −8.1 during
it (``benchmarks/smd_split.py``); on the reference's own pulls its energy from the stretched
chain to the bond at 3.3 Å falls ~0.3 eV further than GFN2-xTB's. Its 2,050 training frames
held 4 with the longest C–C bond at 2.1–2.4 Å and 35 at 2.4–2.8 Å: the snap passes in too few
frames for the UQ selection and its similarity screening to keep many. These frames are taken whatever the
committee's spread, spread evenly in the breaking bond's length, and labelled like any
selected frame.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..chem.breaks import find_break, snap_start
from ..chem.geometry import fragment_labels
from ..dataset import STATUS_UNLABELLED, Frames

__all__ = ["fragments_apart", "snap_frames"]


def _broken(pulls: Sequence[Frames]):
    """(pull, its :func:`rarelearn.chem.breaks.find_break` report) for every pull that broke."""
    for fr in pulls:
        if len(fr) == 0:
            continue
        brk = find_break(fr.numbers, fr.positions)
        if brk.broke:
            yield fr, brk


def fragments_apart(pulls: Sequence[Frames], n_frames: int, reach: float, iteration: int = -1):
    """``n_frames`` frames of the pulls' fragments moved apart, unlabelled (source ``fragments``).

    Frame k takes the break frame (:func:`rarelearn.chem.breaks.find_break`) of the k-th
    broken pull (round robin over the pulls that broke and whose break frame holds the broken
    bond's atoms in two fragments), and moves the
    fragment of the bond's second atom along the bond by (k+1)/``n_frames`` of the way from
    the bond's length there to ``reach`` Å; so the frames step out evenly to ``reach``.

    Parameters
    ----------
    pulls : SMD runs (frames in time order); those that did not break, are empty, or break
        with the fragments already ``reach`` apart are passed over
    n_frames : frames to make (0: none)
    reach : Å, the broken bond's length in the last fragment frame
    iteration : stored per frame

    Returns
    -------
    (Frames with extras ``fragment_bond_length`` (Å), the broken bond of each frame [[i, j], ...]),
    or None when no pull qualifies or ``n_frames`` is 0.
    """
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    starts = []
    for fr, brk in _broken(pulls):
        pos = np.asarray(fr.positions[brk.index], dtype=np.float64)
        i, j = brk.bond
        _, labels = fragment_labels(fr.numbers, pos)
        if labels[i] == labels[j]:
            continue   # joined again (or still joined through another path): no two fragments to part
        if np.linalg.norm(pos[j] - pos[i]) >= reach:
            continue
        starts.append((fr.numbers, pos, (i, j), labels == labels[j]))
    if not starts or n_frames == 0:
        return None, []
    positions, lengths, bonds = [], [], []
    for k in range(n_frames):
        numbers, pos, (i, j), moving = starts[k % len(starts)]
        u = pos[j] - pos[i]
        r0 = float(np.linalg.norm(u))
        r = r0 + (reach - r0) * (k + 1) / n_frames
        new = pos.copy()
        new[moving] += (r - r0) * u / r0
        positions.append(new)
        lengths.append(r)
        bonds.append([int(i), int(j)])
    n_atoms = len(starts[0][0])
    return Frames(numbers=np.asarray(starts[0][0]).copy(), positions=np.stack(positions),
                  energy=np.full(n_frames, np.nan), forces=np.full((n_frames, n_atoms, 3), np.nan),
                  source="fragments", iteration=iteration, labeller="", status=STATUS_UNLABELLED,
                  extras={"fragment_bond_length": np.asarray(lengths)}), bonds


def snap_frames(pulls: Sequence[Frames], n_frames: int, iteration: int = -1):
    """``n_frames`` frames of the pulls' snaps, unlabelled (source ``snap``).

    A pull that broke (:func:`rarelearn.chem.breaks.find_break`) snaps between the last frame
    in which the bond that broke was still a bond (:func:`rarelearn.chem.breaks.snap_start`)
    and its break frame. The frames are dealt round robin over the pulls that broke, and each
    pull's share is spread evenly in the broken bond's length over that window: its q-th of m frames is the
    first at which the bond reaches the fraction (q + 1/2)/m of the way from its length at the
    snap's start to its length at the break.

    Parameters
    ----------
    pulls : SMD runs (frames in time order); those that did not break or are empty are passed over
    n_frames : frames to take (0: none)
    iteration : stored per frame

    Returns
    -------
    (Frames with extras ``snap_bond_length`` (Å), the broken bond of each frame [[i, j], ...]),
    or (None, []) when no pull broke or ``n_frames`` is 0.
    """
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    windows = []
    for fr, brk in _broken(pulls):
        if brk.index == 0:
            continue
        i, j = brk.bond
        start = snap_start(fr.numbers, fr.positions, brk)
        pos = np.asarray(fr.positions[start: brk.index + 1], dtype=np.float64)
        windows.append((fr, start, np.linalg.norm(pos[:, j] - pos[:, i], axis=1), (int(i), int(j))))
    if not windows or n_frames == 0:
        return None, []
    shares = [n_frames // len(windows) + (w < n_frames % len(windows)) for w in range(len(windows))]
    picked, lengths, bonds = [], [], []
    for (fr, start, r, bond), m in zip(windows, shares):
        for q in range(m):
            target = r[0] + (r[-1] - r[0]) * (q + 0.5) / m
            k = int(np.argmax(r >= target))       # r[-1] >= target always
            picked.append(np.asarray(fr.positions[start + k], dtype=np.float64))
            lengths.append(float(r[k]))
            bonds.append(list(bond))
    positions = np.stack(picked)
    return Frames(numbers=np.asarray(windows[0][0].numbers).copy(), positions=positions,
                  energy=np.full(len(positions), np.nan), forces=np.full(positions.shape, np.nan),
                  source="snap", iteration=iteration, labeller="", status=STATUS_UNLABELLED, extras={"snap_bond_length": np.asarray(lengths)}), bonds
