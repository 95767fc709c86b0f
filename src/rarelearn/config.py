"""Campaign configuration: load, fill defaults, validate.

The JSON schema (``workflow/schemas/config.schema.yaml``) gives every key with its
type, default and description. :func:`validate_config` fills the defaults, then
checks types and ranges and the things a schema cannot (the structure file exists
and is readable, pull atoms are in range and distinct, the model covers the
elements, the labeller can run). Every problem is reported as one line naming the
key and what to do, through :class:`ConfigError`. No config value is evaluated as
code; YAML is read with ``yaml.safe_load``.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

__all__ = ["ConfigError", "load_yaml", "validate_config", "fill_defaults", "DEFAULT_SCHEMA"]

#: The schema shipped with the workflow (repository layout).
DEFAULT_SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """An invalid configuration; the message is one line naming the key and the fix."""


def load_yaml(path) -> dict:
    """Read a YAML file safely (no tags that build Python objects)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} not found")
    with open(path) as fh:
        data = yaml.safe_load(fh)
    return data or {}


def fill_defaults(config: dict, schema: dict) -> dict:
    """Return a copy of ``config`` with every missing key set to its schema default (recursively)."""
    out = copy.deepcopy(config) if config is not None else {}
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if isinstance(out.get(key), dict) and sub.get("type") == "object" and "properties" in sub:
            out[key] = fill_defaults(out[key], sub)
    return out


def _key_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _one_line(error) -> str:
    """Turn a jsonschema error into one line naming the key and the fix."""
    key = _key_path(error)
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = key if key != "(top level)" else "the top level"
        return (f"unknown key {'.'.join(filter(None, [key if key != '(top level)' else '', extra[0]]))!r} "
                f"in {where}: allowed keys are {', '.join(allowed)} (check the spelling)")
    if v == "type":
        return f"{key}: {error.instance!r} has the wrong type, expected {error.validator_value}"
    if v == "enum":
        return f"{key}: {error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        word = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return f"{key}: {error.instance!r} is out of range, it must be {word} {error.validator_value}"
    if v in ("minItems", "maxItems"):
        return f"{key}: {error.message}"
    return f"{key}: {error.message}"


def _check_schema(config: dict, schema: dict) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), _key_path(e)))
    if errors:
        raise ConfigError(_one_line(errors[0]))


def _check_molecule(config: dict, base_dir: Path) -> None:
    mol = config["molecule"]
    elements = mol["elements"]
    if mol.get("structure") is None:
        if "C" not in elements or "H" not in elements:
            raise ConfigError(f"molecule.elements: {elements} must include H and C to build an alkane")
        if mol.get("pull") is not None:
            raise ConfigError("molecule.pull is only used with molecule.structure; remove it or set a structure")
        return
    path = Path(mol["structure"])
    if not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        raise ConfigError(f"molecule.structure: file {mol['structure']!r} not found "
                          f"(looked in {path.parent}); give a path to a structure file ASE reads")
    try:
        from ase.io import read

        atoms = read(path)
    except Exception as exc:  # any parser error
        raise ConfigError(f"molecule.structure: ASE cannot read {mol['structure']!r} ({exc.__class__.__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); give a file in a format ASE reads")
    if len(atoms) == 0:
        raise ConfigError(f"molecule.structure: {mol['structure']!r} contains no atoms")
    missing = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if missing:
        raise ConfigError(f"molecule.structure: {mol['structure']!r} contains {', '.join(missing)}, not in "
                          f"molecule.elements {elements}; add them to molecule.elements")
    pull = mol.get("pull")
    if pull is None:
        raise ConfigError("molecule.pull: required with molecule.structure; give two lists of atom indices, "
                          "e.g. pull: [[0], [5]]")
    for g, group in enumerate(pull):
        bad = [i for i in group if i >= len(atoms)]
        if bad:
            raise ConfigError(f"molecule.pull[{g}]: atom index {bad[0]} out of range, the structure has "
                              f"{len(atoms)} atoms (indices 0..{len(atoms) - 1})")
    if set(pull[0]) & set(pull[1]):
        raise ConfigError(f"molecule.pull: the two groups share atoms {sorted(set(pull[0]) & set(pull[1]))}; "
                          "the pulled groups must be distinct")


def _check_model(config: dict) -> None:
    elements = config["molecule"]["elements"]
    hidden = config["model"]["hidden"]
    missing = [e for e in elements if e not in hidden]
    if missing:
        raise ConfigError(f"model.hidden: no layer sizes for {', '.join(missing)}; add e.g. "
                          f"{missing[0]}: [192, 160, 128]")


def _check_labeller(config: dict) -> None:
    name = config["labeller"]["name"]
    try:
        from rarelearn.labellers import make_labeller
    except ImportError:  # labellers not importable: nothing more to check here
        return
    try:
        make_labeller(name, config["labeller"].get("options") or {})
    except Exception as exc:
        raise ConfigError(f"labeller: {exc}") from None


def validate_config(config: dict | None, schema_path=None, base_dir=None, check_labeller: bool = True) -> dict:
    """Fill defaults and validate a campaign config; returns the completed config.

    Parameters
    ----------
    config : the user's config (e.g. Snakemake's ``config`` dict)
    schema_path : JSON-schema YAML file; defaults to the workflow's
    base_dir : directory relative paths are resolved against (default: cwd)
    check_labeller : also construct the labeller (catches a missing DFTB+ binary)

    Raises
    ------
    ConfigError
        One line naming the offending key and the fix.
    """
    schema = load_yaml(schema_path or DEFAULT_SCHEMA)
    if config is not None and not isinstance(config, dict):
        raise ConfigError(f"the config must be a mapping of keys, got {type(config).__name__}")
    _check_schema(config or {}, schema)  # catch unknown keys / types before defaults hide them
    full = fill_defaults(config or {}, schema)
    _check_schema(full, schema)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    _check_molecule(full, base)
    _check_model(full)
    if check_labeller:
        _check_labeller(full)
    return _canonical(full)


def _canonical(value):
    """Keys sorted at every level, so that Snakemake's params (and hence its rerun decisions)
    do not depend on the order keys were written in the YAML file."""
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _main(argv=None) -> int:  # pragma: no cover - thin CLI
    import argparse
    import sys

    p = argparse.ArgumentParser(description="Validate a rarelearn config file")
    p.add_argument("config")
    args = p.parse_args(argv)
    try:
        validate_config(load_yaml(args.config))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    print("config ok")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
