"""rarelearn: active learning of neural-network potentials through rare events.

Units inside the package: eV, Å, fs (kcal/mol only in reports).
"""
import os as _os

_os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

__version__ = "0.1.0"


def load_potential(path="results/potential", **kwargs):
    """The potential of a finished campaign as an ASE calculator (see
    :func:`rarelearn.potential.load_potential`)."""
    from .potential import load_potential as _load

    return _load(path, **kwargs)
