"""TorchScript export of an ANI committee (double precision): the file loads with
``torch.jit.load`` alone, without rarelearn or TorchANI. The potential's ``potential.ts``
(:mod:`rarelearn.potential`) is made here."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from ..atomic import atomic_path
from ..units import HARTREE_EV
from .committee import ModelError

__all__ = ["export_potential"]


# ---------------------------------------------------------------------- TorchScript
class _ScriptedPotential(torch.nn.Module):
    """The committee as one TorchScript module (ANI family), double precision.

    ``forward(numbers (N,) int64, positions (N, 3) or (B, N, 3) float64 Å) -> (B,) eV``,
    the potential's energy (member ``member``; the committee mean when ``member < 0``);
    ``member_energies`` -> (K, B) eV; ``energy_forces`` -> ((B,) eV, (B, N, 3) eV/Å).
    Self energies are added in float64 from the spec's eV values, as the calculator does.
    """

    def __init__(self, ani, self_energies: dict, member: int) -> None:
        super().__init__()
        self.species_converter = ani.species_converter
        self.aev_computer = ani.aev_computer
        self.neural_networks = ani.neural_networks
        sae = torch.zeros(119, dtype=torch.float64)
        known = torch.zeros(119, dtype=torch.bool)
        from ase.data import atomic_numbers

        for el, e in self_energies.items():
            sae[atomic_numbers[el]] = float(e)
            known[atomic_numbers[el]] = True
        self.register_buffer("self_energy_ev", sae)
        self.register_buffer("known", known)
        self.member = int(member)
        self.hartree_ev = float(HARTREE_EV)

    @torch.jit.export
    def member_energies(self, numbers: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if positions.dim() == 2:
            positions = positions.unsqueeze(0)
        if not bool(self.known[numbers].all()):
            raise RuntimeError("the structure has an element this potential was not trained on")
        z = numbers.unsqueeze(0).expand(positions.shape[0], numbers.shape[0]).contiguous()
        elem = self.species_converter(z)
        aev = self.aev_computer(elem, positions)
        e = self.neural_networks(elem, aev, ensemble_values=True)  # (K, B) Hartree
        return e * self.hartree_ev + self.self_energy_ev[numbers].sum()

    def forward(self, numbers: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        e = self.member_energies(numbers, positions)
        if self.member < 0:
            return e.mean(dim=0)
        return e[self.member]

    @torch.jit.export
    def energy_forces(self, numbers: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = positions.detach().clone()
        if x.dim() == 2:
            x = x.unsqueeze(0)
        x.requires_grad_(True)
        e = self.forward(numbers, x)
        g = torch.autograd.grad([e.sum()], [x])[0]
        if g is None:
            raise RuntimeError("no gradient")
        return e.detach(), -g


def export_potential(model, out_path, member: int = -1, extra: dict | None = None) -> Path:
    """Compile an ANI committee to TorchScript in double precision, written atomically.

    The file loads with ``torch.jit.load(path)`` alone (no rarelearn, no TorchANI) and gives::

        module(numbers, positions)              # (B,) eV: member `member`, or the mean if < 0
        module.member_energies(numbers, positions)  # (K, B) eV
        module.energy_forces(numbers, positions)    # ((B,) eV, (B, N, 3) eV/Å)

    with ``numbers`` (N,) int64 atomic numbers and ``positions`` (N, 3) or (B, N, 3)
    float64 Å. ``extra`` (JSON) is stored as the extra file ``rarelearn_potential.json``.

    Raises ModelError for a SchNet committee (its TorchScript export is not available).
    """
    from .ani import EnsembleModel

    if not isinstance(model, EnsembleModel):
        raise ModelError(f"TorchScript export covers ANI committees, not {type(model).__name__}")
    ani = copy.deepcopy(model.module).cpu().double()
    for p in ani.parameters():
        p.requires_grad_(False)
    scripted = torch.jit.script(_ScriptedPotential(ani, model.spec["self_energies"], member).eval())
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    info = {"spec": model.spec, "member": member, "units": "eV, angstrom, eV/angstrom", "dtype": "float64",
            **(extra or {})}
    with atomic_path(out_path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={"rarelearn_potential.json": json.dumps(info)})
    return out_path
