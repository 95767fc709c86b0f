"""The potential as an ASE calculator with the committee's spread (:func:`load_potential`)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from ..models.committee import ModelError

from .card import _sha256, read_card


class OutsideTrainedRange(UserWarning):
    """A frame's committee spread is larger than any the potential saw on its training data."""


# ---------------------------------------------------------------------- ASE
class PotentialCalculator(Calculator):
    """The potential as an ASE calculator, with the committee's spread in its results.

    Results
    -------
    energy, free_energy : float, eV (member ``member``, or the committee mean)
    forces : (N, 3) eV/Å
    energies : (K,) member energies, eV
    member_forces : (K, N, 3) eV/Å
    energy_std : float, eV (ddof 0 over the members)
    forces_std : (N,) eV/Å, per atom ``sqrt(mean_k |F_k,i − mean_k F_k,i|²)``
    force_std : float, eV/Å, the largest of ``forces_std``
    outside_trained_range : bool, energy_std or force_std above the card's bounds

    Attributes
    ----------
    frames_outside : how many calculations so far were outside the trained range
    card : the model card (dict) or None

    Parameters
    ----------
    model : committee of either family (or a model file)
    member : int, None (the committee mean), or the card's best member when built by
        :func:`load_potential`
    bounds : (energy_std eV, force_std eV/Å) above which a frame is outside the trained
        range (None: no check)
    warn : warn once (:class:`OutsideTrainedRange`) at the first frame outside the range
    """

    implemented_properties = ["energy", "free_energy", "forces", "energies", "member_forces", "energy_std",
                              "forces_std", "force_std", "outside_trained_range"]
    default_parameters: dict = {}

    def __init__(self, model, member: int | None = None, bounds: tuple[float, float] | None = None,
                 warn: bool = True, card: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        from ..models.files import make_calculator

        self.inner = make_calculator(model, member=member)
        self.model = self.inner.model
        self.member = member
        self.bounds = bounds
        self.warn = warn
        self.card = card
        self.frames_outside = 0
        self._warned = False

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        inner = self.inner
        inner.results = {}
        inner.calculate(self.atoms, ["energy", "forces", "member_forces"], all_changes)
        res = dict(inner.results)
        fm = res["member_forces"]
        dev = fm - fm.mean(axis=0, keepdims=True)
        per_atom = np.sqrt((dev ** 2).sum(axis=-1).mean(axis=0))
        res["forces_std"] = per_atom
        res["force_std"] = float(per_atom.max()) if per_atom.size else 0.0
        outside = False
        if self.bounds is not None:
            e_max, f_max = self.bounds
            outside = bool((e_max is not None and res["energy_std"] > e_max)
                           or (f_max is not None and res["force_std"] > f_max))
        res["outside_trained_range"] = outside
        if outside:
            self.frames_outside += 1
            if self.warn and not self._warned:
                self._warned = True
                warnings.warn(OutsideTrainedRange(
                    f"the committee's spread (energy {res['energy_std']:.4f} eV, force {res['force_std']:.4f} eV/Å) "
                    f"is larger than on any training frame (energy {self.bounds[0]:.4f} eV, force "
                    f"{self.bounds[1]:.4f} eV/Å): this structure is outside the trained range, treat its "
                    f"energy and forces with care (warned once; see calc.frames_outside)"), stacklevel=2)
        self.results = res


def load_potential(path="results/potential", member: int | str | None = "best", device=None,
                   dtype: torch.dtype = torch.float64, warn: bool = True, check_hash: bool = True
                   ) -> PotentialCalculator:
    """The potential of a finished campaign as an ASE calculator.

    Parameters
    ----------
    path : the potential folder (``results/potential``) holding ``card.json`` and ``ensemble.pt``
    member : "best" (the card's best member, the one the barrier errors were measured with),
        "mean" or None (the committee mean), or a member index
    device : torch device (default CPU)
    dtype : torch.float64 (default: matches ``potential.ts`` to 1e-6 eV) or torch.float32
    warn : warn once when a frame leaves the trained range (the card's spread bounds)
    check_hash : refuse an ``ensemble.pt`` whose SHA-256 is not the card's

    Returns
    -------
    :class:`PotentialCalculator`
    """
    from ..models.files import load_model

    path = Path(path)
    card = read_card(path)
    ens_path = path / "ensemble.pt"
    if check_hash:
        want = card["files"]["ensemble.pt"]["sha256"]
        if not ens_path.exists() or _sha256(ens_path) != want:
            raise ModelError(f"{ens_path}: missing, or not the file the card describes (SHA-256 differs)")
    model = load_model(ens_path, device=device).to(dtype=dtype)
    if member == "best":
        member = int(card["model"]["best_member"])
    elif member == "mean":
        member = None
    unc = card["uncertainty"]
    bounds = (unc.get("warn_energy_std_above_eV"), unc.get("warn_force_std_above_eV_per_A"))
    return PotentialCalculator(model, member=member, bounds=bounds, warn=warn, card=card)
