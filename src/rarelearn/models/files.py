"""Model files of every family: one layout, one saver, one loader.

A model file is a ``torch.save`` dictionary holding only tensors, str, int, float, bool,
None, list and dict, so ``torch.load(path, weights_only=True)`` reads it::

    {"format": "rarelearn-ani" | "rarelearn-schnet", "version": 1,
     "spec": {...},                  # the family's spec (models.ani.make_spec,
                                     # models.schnet.make_schnet_spec)
     "members": [state_dict, ...],   # one network state dict per member
     "meta": {...}}                  # free-form: iteration, seeds, ...

:func:`save_model` picks the family from ``spec["family"]`` (none: ANI), checks that every
member fits the spec and writes atomically (temporary name, then rename).
:func:`load_model` picks the family from the file's format tag. ``family=`` restricts
either to one family (:func:`load_ensemble`, :func:`load_schnet` and their savers are
that restriction).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from ase.calculators.calculator import Calculator

from .committee import ModelError, _state_plain

__all__ = ["ModelFamily", "families", "read_model_blob", "save_model", "load_model", "save_ensemble",
           "load_ensemble", "save_schnet", "load_schnet", "make_calculator"]


@dataclass(frozen=True)
class ModelFamily:
    """What the file layer needs of a model family."""

    name: str  # "ani" | "schnet" (``spec["family"]``)
    label: str  # for messages: "ANI", "SchNet"
    format: str  # the file's format tag
    version: int
    complete_spec: Callable[[dict], dict]
    check_states: Callable[[Path, dict, list], None]  # raises ModelError naming the member
    committee: type  # ``from_states(spec, states, meta=, source=)``
    calculator: type


def families() -> dict[str, ModelFamily]:
    """Family name -> :class:`ModelFamily` (imported here, so each family module stays
    free of the file layer)."""
    from . import ani, schnet

    return {f.name: f for f in (ani.FILE_FAMILY, schnet.FILE_FAMILY)}


def _family_of_spec(spec: dict) -> ModelFamily:
    name = spec.get("family", "ani")
    fams = families()
    if name not in fams:
        raise ValueError(f"unknown model family {name!r} (one of {', '.join(fams)})")
    return fams[name]


def _formats(family: str | None) -> dict[str, ModelFamily]:
    fams = families()
    chosen = fams.values() if family is None else [fams[family]]
    return {f.format: f for f in chosen}


def _plain(obj: Any, where: str = "meta") -> Any:
    """Convert to the types ``torch.load(weights_only=True)`` accepts (numpy scalars etc.)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, np.generic):  # before float: np.float64 is a float subclass
        return obj.item()
    if obj is None:
        return None
    for kind in (bool, int, float, str):  # plain builtins (not subclasses such as enums)
        if isinstance(obj, kind):
            return kind(obj)
    if isinstance(obj, np.ndarray):
        return [_plain(x, where) for x in obj.tolist()]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v, where) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(x, where) for x in obj]
    raise TypeError(f"{where}: cannot store a {type(obj).__name__} in a model file")


def _write_model_file(path: Path, fmt: str, version: int, spec: dict, states: Sequence[dict],
                      meta: dict | None) -> Path:
    """The model file of either family, written atomically (temporary file in the same
    folder, then rename): ``format``, ``version``, ``spec``, ``members``, ``meta``."""
    from ..atomic import atomic_path

    blob = {"format": fmt, "version": version, "spec": _plain(spec, "spec"),
            "members": [_state_plain(st) for st in states], "meta": _plain(meta or {}, "meta")}
    with atomic_path(path) as tmp:  # a full disk is reported as such, naming the file
        torch.save(blob, tmp)
    return Path(path)


def _load_blob(path: Path):
    """``torch.load(weights_only=True)`` of a model file, failing with a :class:`ModelError`
    that names the file and what to do (and not PyTorch's advice to load it with
    ``weights_only=False``, which a model file never needs)."""
    from ..atomic import remake_hint

    if not path.exists():
        raise ModelError(f"{path}: no such model file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, garbage, pickle of other objects, ...
        raise ModelError(f"{path}: not a readable rarelearn model file (truncated, corrupt or not a model: "
                         f"torch.load raised {type(exc).__name__}); {remake_hint(path)}") from None


def read_model_blob(path) -> dict:
    """The dictionary in a rarelearn model file of either family (``format``, ``version``,
    ``spec``, ``members``, ``meta``), read with ``torch.load(weights_only=True)``.

    Raises :class:`ModelError` naming the file and what to do when it is missing,
    unreadable (truncated, corrupt, or pickled objects that are not a model) or not a
    rarelearn model file. PyTorch's own advice for a refused file (to load it with
    ``weights_only=False``) is not passed on: a model file never needs it."""
    from ..atomic import remake_hint

    path = Path(path)
    blob = _load_blob(path)
    if not isinstance(blob, dict) or not isinstance(blob.get("members"), list) or "spec" not in blob:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise ModelError(f"{path}: not a rarelearn model file (format {found!r}, no spec and members); "
                         f"{remake_hint(path)}")
    return blob


def _read_model_file(path, kinds: dict[str, ModelFamily]):
    """The committee in a model file, by its format tag (``kinds``: the accepted formats). A
    :class:`ModelError` names the file when it is missing, unreadable, of another format
    (with a hint when it is the other family's), another version, incomplete, or its
    members do not fit its spec."""
    path = Path(path)
    blob = _load_blob(path)
    found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
    if found not in kinds:
        other = {f.format: f for f in families().values()}.get(found)
        hint = f" (a {other.label} model: read it with rarelearn.models.files.load_model)" if other else ""
        what = " or ".join(k.label for k in kinds.values())
        raise ModelError(f"{path}: not a rarelearn {what} model file (format {found!r}, expected "
                         f"{' or '.join(repr(f) for f in kinds)}){hint}")
    fam = kinds[found]
    version, family, complete_spec, cls = fam.version, fam.label, fam.complete_spec, fam.committee
    if blob.get("version") != version:
        raise ModelError(f"{path}: {family} model file version {blob.get('version')!r}, this rarelearn "
                         f"reads version {version}")
    try:
        spec = complete_spec(blob["spec"])
        states = list(blob["members"])
        meta = dict(blob.get("meta") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: incomplete or invalid {family} model file: {exc}") from exc
    if not states:
        raise ModelError(f"{path}: model file has no members")
    try:
        return cls.from_states(spec, states, meta=meta, source=str(path))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ModelError(f"{path}: members do not match the {family} spec: {exc}") from exc


def save_model(path, states: Sequence[dict], spec: dict, meta: dict | None = None,
               family: str | None = None) -> Path:
    """Write the model file of ``states`` (one state dict per member, tensors on any device)
    atomically; the family is ``spec["family"]`` (a spec without one is ANI) unless
    ``family`` says. The spec is completed and validated, and every member checked against
    it, before anything is written.

    Returns
    -------
    Path of the written file.
    """
    path = Path(path)
    fam = _family_of_spec({**spec, "family": family} if family else spec)
    states = list(states)
    if not states:
        raise ValueError("an ensemble needs at least one member")
    spec = fam.complete_spec(spec if fam.name != "ani" else {k: v for k, v in spec.items() if k != "family"})
    fam.check_states(path, spec, states)
    return _write_model_file(path, fam.format, fam.version, spec, states, meta)


def load_model(path, device: str | torch.device | None = None, family: str | None = None):
    """The committee in a model file, of the family its format tag names
    (:class:`rarelearn.models.ani.EnsembleModel` or
    :class:`rarelearn.models.schnet.SchNetEnsemble`); ``family`` accepts only that one.

    Raises
    ------
    ModelError
        naming the file when it is missing, truncated, not a rarelearn model (of ``family``),
        of another format version, or its members do not match its spec.
    """
    model = _read_model_file(path, _formats(family))
    if device is not None:
        model.to(device)
    return model


def save_ensemble(path, members_state: list[dict], spec: dict, meta: dict | None = None) -> Path:
    """:func:`save_model` of an ANI committee (spec: :func:`rarelearn.models.ani.make_spec`)."""
    return save_model(path, members_state, spec, meta, family="ani")


def load_ensemble(path, device: str | torch.device | None = None):
    """:func:`load_model` accepting ANI files only."""
    return load_model(path, device, family="ani")


def save_schnet(path, states: Sequence[dict], spec: dict, meta: dict | None = None) -> Path:
    """:func:`save_model` of a SchNet committee (spec: :func:`rarelearn.models.schnet.make_schnet_spec`)."""
    return save_model(path, states, spec, meta, family="schnet")


def load_schnet(path, device: str | torch.device | None = None):
    """:func:`load_model` accepting SchNet files only."""
    return load_model(path, device, family="schnet")


def make_calculator(model, member: int | None = None, device=None) -> Calculator:
    """The ASE calculator of either family (``model``: a committee or a model file):
    :class:`rarelearn.models.ani.NNPCalculator` or :class:`rarelearn.models.schnet.SchNetCalculator`."""
    fams = families().values()
    if not isinstance(model, tuple(f.committee for f in fams)):
        model = load_model(model)
    fam = next(f for f in fams if isinstance(model, f.committee))
    return fam.calculator(model, member=member, device=device)
