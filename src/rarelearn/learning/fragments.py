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
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..chem.breaks import find_break
from ..chem.geometry import fragment_labels
from ..dataset import STATUS_UNLABELLED, Frames

__all__ = ["fragments_apart"]


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
    for fr in pulls:
        if len(fr) == 0:
            continue
        brk = find_break(fr.numbers, fr.positions)
        if not brk.broke:
            continue
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
