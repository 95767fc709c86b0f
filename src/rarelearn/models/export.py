"""TorchScript export of an ANI model file (loads without rarelearn or TorchANI)."""
from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import torch

from .ani import HARTREE_EV
from .committee import ModelError
from .files import load_ensemble

__all__ = ["export_torchscript"]


class _ScriptableANI(torch.nn.Module):
    """TorchScript wrapper: atomic numbers + positions (Å) -> energies (eV).

    ``forward(numbers (B, N) or (N,), positions (B, N, 3)) -> (B,) eV`` is the ensemble
    mean (or the single member); ``member_energies`` gives (K, B) eV.
    """

    def __init__(self, ani) -> None:
        super().__init__()
        self.ani = ani
        self.hartree_ev = HARTREE_EV

    def forward(self, numbers: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if numbers.dim() == 1:
            numbers = numbers.unsqueeze(0).expand(positions.shape[0], numbers.shape[0]).contiguous()
        _, e = self.ani((numbers, positions))
        return e * self.hartree_ev

    @torch.jit.export
    def member_energies(self, numbers: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if numbers.dim() == 1:
            numbers = numbers.unsqueeze(0).expand(positions.shape[0], numbers.shape[0]).contiguous()
        _, e = self.ani((numbers, positions), ensemble_values=True)
        return e * self.hartree_ev


def export_torchscript(model_path, out_path, member: int | None = None):
    """Compile a model file to TorchScript (``torch.jit.script``), written atomically.

    The result loads with ``torch.jit.load(out_path)`` without rarelearn or TorchANI
    installed. ``module(numbers, positions)`` takes atomic numbers (N,) or (B, N) int64 and
    positions (B, N, 3) Å (float32) and returns the ensemble-mean energy (B,) in eV
    (member ``member`` only if given); ``module.member_energies(...)`` returns (K, B) eV.
    The model spec is stored as the extra file ``rarelearn_spec.json``.

    Returns
    -------
    Path of the written file.
    """
    model = load_ensemble(model_path)
    if member is not None:
        model = model.member(member)
    ani = copy.deepcopy(model.module).cpu()
    for p in ani.parameters():
        p.requires_grad_(False)
    try:
        scripted = torch.jit.script(_ScriptableANI(ani).eval())
    except Exception as exc:  # pragma: no cover - depends on the torchani/torch pair
        raise ModelError(f"{model_path}: TorchScript compilation failed: {exc}") from exc
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    extra = {"rarelearn_spec.json": json.dumps({"spec": model.spec, "member": member,
                                                "source": str(model_path), "units": "eV, angstrom"})}
    try:
        torch.jit.save(scripted, tmp, _extra_files=extra)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path
