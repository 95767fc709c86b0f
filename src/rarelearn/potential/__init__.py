"""The potential: the campaign's deliverable, its model card, and how to use it.

When a campaign ends (its stop rule met, or its last iteration evaluated) the workflow's
``potential`` rule writes ``results/potential/``:

``ensemble.pt``
    the chosen iteration's committee (a copy of ``results/iter_NNN/ensemble.pt``; read it
    with :func:`rarelearn.models.files.load_model`, or through :func:`load_potential`).
``potential.ts``
    the same committee compiled to TorchScript (ANI models), double precision; loads with
    ``torch.jit.load`` alone, without rarelearn or TorchANI (see :func:`export_potential`).
``card.json``, ``card.md``, ``card.rst``
    the model card (:func:`build_card`): what it was trained on, how good it is, where it
    can be trusted, and the SHA-256 of both model files. ``card.rst`` is the same card for
    the HTML report (``snakemake --report`` opens with it).

Which iteration (:func:`choose_iteration`)
------------------------------------------
* the stop rule (``campaign.stop``) holds after the last evaluated iteration: that
  iteration ("converged");
* otherwise ("best"): the iteration with the smallest error in the stop rule's observable,
  ``campaign.stop.observable`` (also when the rule is disabled): ``smd`` |ΔE_a| (kcal/mol),
  ``cogef`` |ΔE_max| (kcal/mol), ``both`` the larger of |ΔE_a| / target_kcal and
  |ΔE_max| / cogef_target_kcal. An iteration without that figure (no barrier, a profile
  that never broke) ranks after every iteration with one; ties go to the later iteration.
  When no iteration has the figure, the one with the lowest energy MAE on unseen frames.

The potential's energy
----------------------
By default the energy and forces are those of the iteration's *best member* (lowest force
MAE on its training set), the member that drove the campaign's SMD pulls and COGEF scan,
so the barrier errors on the card are this potential's. The whole committee gives the
uncertainty: ``energy_std`` (eV), the standard deviation (ddof 0) of the K member
energies, and ``force_std`` (eV/Å), the largest over atoms of the per-atom spread
``sqrt(mean_k |F_k,i − mean_k F_k,i|²)``. ``member="mean"`` gives the committee mean instead.

Trusted range
-------------
The card records the committee's spreads over the frames the chosen iteration was trained
on; a frame whose ``energy_std`` or ``force_std`` exceeds the largest seen there is outside
the trained range. :class:`PotentialCalculator` warns once (a :class:`OutsideTrainedRange`
warning) when that first happens, counts such frames, and flags each frame in its results.

A campaign of several molecules (``molecules:``) gets the same files, its card a section per
molecule (:mod:`rarelearn.potential.family`).

Units: eV, Å, eV/Å; kcal/mol only for the barrier errors on the card.
"""
from .build import build_potential
from .calculator import OutsideTrainedRange, PotentialCalculator, load_potential
from .card import CARD_FORMAT, CARD_VERSION, POTENTIAL_FILES, build_card, card_markdown, card_rst, read_card
from .choice import choose_iteration, potential_sources
from .family import build_family_potential, choose_family_iteration
from .spread import committee_spread, trained_range
from ..models.export import export_potential

__all__ = [
    "CARD_FORMAT",
    "CARD_VERSION",
    "POTENTIAL_FILES",
    "OutsideTrainedRange",
    "choose_iteration",
    "choose_family_iteration",
    "build_family_potential",
    "potential_sources",
    "committee_spread",
    "trained_range",
    "export_potential",
    "build_card",
    "card_markdown",
    "card_rst",
    "build_potential",
    "read_card",
    "PotentialCalculator",
    "load_potential",
]
