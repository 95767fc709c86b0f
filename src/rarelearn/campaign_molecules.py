"""The molecules of a campaign: the one of ``molecule``, or a family (``molecules``).

A family campaign trains one committee on several molecules; each keeps its own reference
stage, pulls, COGEF path, selection, data set file and evaluation in a folder of its own.
:func:`campaign_molecules` turns the config into one record per molecule, in config order::

    name       C6, ethanol, ... (molecules[i].name, else C<n> or the structure file's stem)
    dir        the path segment of its results: "" for a one-molecule campaign (the paths
               of results/reference/..., results/iter_NNN/... are as they always were),
               "/molecules/NAME" in a family (results/reference/molecules/NAME/...)
    spec       its molecule section (alkane, structure, pull, relax, elements), what the
               reference stage builds it from
    weight     its share of an iteration's label budget; 0: held out (evaluated, never trained on)
    md_frames  frames of its equilibrium MD set (0: none)
    data       a labelled data set file to start its data set from (another campaign's
               ``merged.h5``), or None
    pull_steps           its SMD pull's steps (the reference's and the potential's)
    cogef_max_extension  how far its COGEF scans go, Å

One ``smd`` and one ``cogef`` section serve every molecule, but a longer chain stretches
further before a bond breaks; so in a family an alkane is pulled and scanned as far as the
``transfer`` study pulls and scans it (:func:`alkane_pull_steps`,
:func:`alkane_cogef_extension`: hexane and shorter chains keep the sections' lengths), and
an entry's own ``pull_steps`` / ``cogef_max_extension`` override that (structures too).

:func:`label_budget` splits ``selection.max_frames`` over the trained molecules by weight
(``selection.budget_split: weight``); :func:`error_budget` by weight × each molecule's
current COGEF error (``cogef_error``), read when the iteration's COGEF profiles are known.
"""
from __future__ import annotations

import math
from pathlib import Path

__all__ = ["MOLECULE_KEYS", "campaign_molecules", "model_elements", "label_budget", "error_budget",
           "check_structure", "alkane_pull_steps", "alkane_cogef_extension"]

#: The keys of a molecule section (``molecule``, and each ``molecules`` entry besides name,
#: weight and md_frames).
MOLECULE_KEYS = ("alkane", "structure", "pull", "relax", "elements")


class _Error(ValueError):
    pass


def _entry_spec(base: dict, entry: dict) -> dict:
    """A ``molecules`` entry laid on the ``molecule`` section: an alkane entry drops the
    section's structure and pull, a structure entry keeps its own."""
    spec = {k: base.get(k) for k in MOLECULE_KEYS}
    if "alkane" in entry and "structure" not in entry:
        spec["structure"], spec["pull"] = None, None
    spec.update({k: entry[k] for k in MOLECULE_KEYS if k in entry})
    return spec


def alkane_pull_steps(smd_cfg: dict, n_carbons: int, extension_per_bond: float) -> int:
    """Steps of an SMD pull long enough to break the n-alkane with ``n_carbons``.

    A longer chain stretches further before a C–C bond breaks (GFN2-xTB, 1 Å/ps: ~1.8 Å of
    extension for butane, ~3.0 Å for octane, not broken after 3.25 Å for nonane), so the pull
    lasts at least ``extension_per_bond`` Å per C–C bond: max(smd.pull_steps,
    ⌈extension_per_bond · (n − 1) / (velocity · timestep)⌉). 0.65 Å is what the default
    protocol gives hexane, whose pull (and every shorter chain's) is then unchanged.
    """
    n = int(n_carbons)
    if n < 2 or extension_per_bond < 0:
        raise ValueError(f"need n_carbons >= 2 and extension_per_bond >= 0, got {n_carbons}, {extension_per_bond}")
    per_step = float(smd_cfg["velocity"]) * float(smd_cfg["timestep_fs"]) * 1e-3  # Å per step
    return max(int(smd_cfg["pull_steps"]), int(math.ceil(float(extension_per_bond) * (n - 1) / per_step - 1e-6)))


def alkane_cogef_extension(max_extension: float, n_carbons: int) -> float:
    """How far to scan the n-alkane with ``n_carbons`` by COGEF: ``max_extension`` scaled by
    its number of C–C bonds against hexane's five, never less than ``max_extension``
    (undecane does not break within the default 4 Å)."""
    return max(float(max_extension), float(max_extension) * (int(n_carbons) - 1) / 5)


def _lengths(config: dict, spec: dict, entry: dict, family: bool) -> dict:
    """A molecule's pull steps and COGEF extent: the entry's own, else in a family an
    alkane's scaled by its length, else the ``smd`` and ``cogef`` sections'."""
    smd, cogef = config["smd"], config["cogef"]
    alkane = family and spec.get("structure") is None and spec.get("alkane") is not None
    per_bond = config["studies"]["transfer"]["extension_per_bond"]   # the transfer study's rule, its default in the schema
    pull = alkane_pull_steps(smd, spec["alkane"], per_bond) if alkane else int(smd["pull_steps"])
    extent = alkane_cogef_extension(cogef["max_extension"], spec["alkane"]) if alkane else float(cogef["max_extension"])
    return {"pull_steps": int(entry.get("pull_steps", pull)),
            "cogef_max_extension": float(entry.get("cogef_max_extension", extent))}


def _default_name(spec: dict) -> str:
    if spec.get("structure") is not None:
        return Path(spec["structure"]).stem
    return f"C{spec['alkane']}"


def campaign_molecules(config: dict) -> list[dict]:
    """One record per molecule (see the module docstring); raises ValueError naming the
    entry on a clash of names, a held-out molecule with an MD set, or no trained molecule."""
    md_default = config["reference"]["md_frames"]
    entries = config.get("molecules")
    if entries is None:
        spec = {k: config["molecule"].get(k) for k in MOLECULE_KEYS}
        return [{"name": _default_name(spec), "dir": "", "spec": config["molecule"], "weight": 1.0,
                 "md_frames": md_default, "data": None, **_lengths(config, spec, {}, family=False)}]
    out, seen = [], {}
    for i, entry in enumerate(entries):
        spec = _entry_spec(config["molecule"], entry)
        name = entry.get("name") or _default_name(spec)
        if name in seen:
            raise _Error(f"molecules[{i}]: name {name!r} is already molecules[{seen[name]}]'s; give each "
                         f"entry its own name (e.g. name: {name}b)")
        seen[name] = i
        weight = float(entry.get("weight", 1.0))
        md = entry.get("md_frames")
        if weight == 0 and md:
            raise _Error(f"molecules[{i}].md_frames: {md}, but weight 0 holds {name} out of training; drop "
                         "md_frames or give it a weight")
        md = 0 if weight == 0 else (md_default if md is None else md)
        data = entry.get("data")
        if data is not None and weight == 0:
            raise _Error(f"molecules[{i}].data: {data!r}, but weight 0 holds {name} out of training; drop data "
                         "or give it a weight")
        out.append({"name": name, "dir": "" if len(entries) == 1 else f"/molecules/{name}", "spec": spec,
                    "weight": weight, "md_frames": md, "data": data,
                    **_lengths(config, spec, entry, family=len(entries) > 1)})
    if not any(m["weight"] > 0 for m in out):
        raise _Error("molecules: every weight is 0, nothing would be trained; give at least one molecule a "
                     "weight > 0")
    if not any(m["md_frames"] > 0 or m["data"] for m in out):
        raise _Error("molecules: no molecule has an MD set (md_frames 0 everywhere) or data, so iteration 0 "
                     "has nothing to train on; give one molecule md_frames > 0")
    return out


def model_elements(molecules: list[dict]) -> list[str]:
    """The elements the model covers: every molecule's, in order of first appearance."""
    out: list[str] = []
    for m in molecules:
        out += [e for e in m["spec"]["elements"] if e not in out]
    return out


def label_budget(max_frames: int | None, molecules: list[dict]) -> dict[str, int | None]:
    """Frames each molecule may select in an iteration: ``max_frames`` × its weight / the
    sum of the weights, rounded down (at least 1 for a trained molecule); 0 when held out.
    ``max_frames`` None (no cap): None for every trained molecule."""
    total = sum(m["weight"] for m in molecules)
    return {m["name"]: (0 if m["weight"] <= 0 else None if max_frames is None
                        else max(1, int(max_frames * m["weight"] / total)))
            for m in molecules}


def error_budget(max_frames: int, weights: dict[str, float], errors_kcal: dict[str, float],
                 floor_kcal: float) -> dict[str, int]:
    """The label budget split by need (``selection.budget_split: cogef_error``): molecule m
    gets ``max_frames`` × w_m·e_m / Σ w·e frames, rounded down, at least 1, where e_m is its
    current COGEF error |ΔE_max| (kcal/mol) raised to ``floor_kcal`` (the stop rule's COGEF
    tolerance): a molecule the potential already gets right keeps a share as small as the
    tolerance, never none. ``weights``: the trained molecules' (weight > 0); a NaN or
    missing error counts as the largest of the others (unknown is treated as far off)."""
    known = [abs(e) for e in errors_kcal.values() if e == e]
    worst = max(known) if known else floor_kcal
    need = {}
    for name, w in weights.items():
        e = errors_kcal.get(name, math.nan)
        need[name] = w * max(abs(e) if e == e else worst, floor_kcal)
    total = sum(need.values())
    return {name: max(1, int(max_frames * n / total)) for name, n in need.items()}


def check_structure(mol: dict, base_dir: Path, key: str = "molecule") -> None:
    """A molecule section as the reference stage will need it (``key`` names it in the
    message): an alkane with H and C among its elements, or a structure file ASE reads, whose
    elements are listed, with two distinct groups of pull atoms in range."""
    elements = mol["elements"]
    if mol.get("structure") is None:
        if "C" not in elements or "H" not in elements:
            raise _Error(f"{key}.elements: {elements} must include H and C to build an alkane")
        if mol.get("pull") is not None:
            raise _Error(f"{key}.pull is only used with {key}.structure; remove it or set a structure")
        return
    path = Path(mol["structure"])
    if not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        raise _Error(f"{key}.structure: file {mol['structure']!r} not found "
                     f"(looked in {path.parent}; a relative path is read from the working directory, "
                     "not the config file's folder); give a path to a structure file ASE reads")
    try:
        from ase.io import read

        atoms = read(path)
    except Exception as exc:  # any parser error
        raise _Error(f"{key}.structure: ASE cannot read {mol['structure']!r} ({exc.__class__.__name__}: "
                     f"{str(exc).splitlines()[0] if str(exc) else ''}); give a file in a format ASE reads")
    if len(atoms) == 0:
        raise _Error(f"{key}.structure: {mol['structure']!r} contains no atoms")
    missing = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if missing:
        raise _Error(f"{key}.structure: {mol['structure']!r} contains {', '.join(missing)}, not in "
                     f"{key}.elements {elements}; add them to {key}.elements")
    pull = mol.get("pull")
    if pull is None:
        raise _Error(f"{key}.pull: required with {key}.structure; give two lists of atom indices, "
                     "e.g. pull: [[0], [5]]")
    for g, group in enumerate(pull):
        bad = [i for i in group if i >= len(atoms)]
        if bad:
            raise _Error(f"{key}.pull[{g}]: atom index {bad[0]} out of range, the structure has "
                         f"{len(atoms)} atoms (indices 0..{len(atoms) - 1})")
    if set(pull[0]) & set(pull[1]):
        raise _Error(f"{key}.pull: the two groups share atoms {sorted(set(pull[0]) & set(pull[1]))}; "
                     "the pulled groups must be distinct")
