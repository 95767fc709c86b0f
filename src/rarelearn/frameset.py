"""Several molecules' data set files seen as one set of training frames.

A :class:`FrameSet` joins several :class:`rarelearn.dataset.Frames` (one per molecule or
composition, each from its own file) into one indexable set of frames without mixing
their atoms: global frame index g lies in part ``p`` at local index ``g - offsets[p]``
(:meth:`FrameSet.part_of`); ``ok``, ``hashes`` and ``energy`` are the parts' arrays
joined in part order. :func:`read_training_frames` reads one path (or a list of one) as
plain :class:`~rarelearn.dataset.Frames`, exactly as :func:`rarelearn.dataset.read_frames`,
and a list of several as a :class:`FrameSet` (parts in the given order; a file with no
frames stays an empty part). The files themselves are :mod:`rarelearn.dataset`'s.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from .dataset import Frames, read_frames

__all__ = ["FrameSet", "read_training_frames"]


class FrameSet:
    """Frames of several molecules (compositions) seen as one indexable set of frames.

    Global frame index ``g`` (0 <= g < len) is frame ``g - offsets[p]`` of ``parts[p]``,
    for the part ``p`` with ``offsets[p] <= g < offsets[p + 1]``. Parts with no frames are
    kept (they simply own no global index), so part numbers follow the given order.

    Attributes
    ----------
    parts : list of :class:`Frames`, one per molecule
    offsets : (P + 1,) int64, global index of each part's first frame, then the total
    """

    def __init__(self, parts: Iterable[Frames]) -> None:
        self.parts = list(parts)
        if not self.parts:
            raise ValueError("a FrameSet needs at least one part")
        for p in self.parts:
            if not isinstance(p, Frames):
                raise TypeError(f"FrameSet parts must be Frames, got {type(p).__name__}")
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in self.parts])]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def ok(self) -> np.ndarray:
        """(F,) bool: frames usable for training, the parts' :attr:`Frames.ok` joined."""
        return np.concatenate([p.ok for p in self.parts])

    @property
    def hashes(self) -> np.ndarray:
        """(F,) str content hashes, the parts' joined."""
        return np.concatenate([p.hashes for p in self.parts]).astype(object)

    @property
    def energy(self) -> np.ndarray:
        """(F,) float64 eV, the parts' joined."""
        return np.concatenate([p.energy for p in self.parts])

    @property
    def atoms_per_frame(self) -> np.ndarray:
        """(F,) int64: the number of atoms of each frame's molecule."""
        return np.repeat([p.n_atoms for p in self.parts], np.diff(self.offsets)).astype(np.int64)

    def part_of(self, index) -> tuple[np.ndarray, np.ndarray]:
        """(part index, local index) arrays of global frame indices ``index`` (int or array)."""
        idx = np.asarray(index, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"frame indices out of range for {len(self)} frames")
        part = np.searchsorted(self.offsets, idx, side="right") - 1
        return part, idx - self.offsets[part]


def read_training_frames(paths) -> "Frames | FrameSet":
    """The training frames of one or several data set files.

    A single path, or a list of one, gives the plain :class:`Frames` of
    :func:`read_frames`; a list of several gives a :class:`FrameSet` of their frames,
    parts in the given order (a file with no frames stays an empty part).
    """
    if isinstance(paths, (str, Path)):
        return read_frames(paths)
    paths = list(paths)
    if not paths:
        raise ValueError("no data set files given")
    if len(paths) == 1:
        return read_frames(paths[0])
    return FrameSet([read_frames(p) for p in paths])
