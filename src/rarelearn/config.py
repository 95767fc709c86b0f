"""Campaign configuration: load, layer, fill defaults, validate.

The JSON schema (``workflow/schemas/config.schema.yaml``) gives every key with its
type, default and description; its defaults are the default campaign, and
``config/config.yaml`` restates them (a test keeps the two equal). A campaign's config is
``config/config.yaml``, then each ``--configfile`` in order, then ``--config``, merged
as Snakemake merges config files (:func:`merge_config`: mappings key by key, anything
else replaced); :func:`campaign_config` does that, and the workflow calls it.

:func:`validate_config` reads values as the user meant them where YAML 1.1 or
``--config`` did not (``1e-3`` is a number, ``3.0`` members are 3, ``"5"`` epochs are
5), fills the defaults, then checks types and ranges and the things a schema cannot
(the structure file exists and is readable, pull atoms are in range and distinct, the
model covers the elements, replica counts fit, the labeller can run). Every problem is
reported as one line naming the key or file and what to do, through
:class:`ConfigError`. No config value is evaluated as code; YAML is read with
``yaml.safe_load``. Relative paths in a config (``molecule.structure``) are read from
the working directory, where ``snakemake`` runs.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from . import config_checks
from .config_checks import ConfigError

__all__ = ["ConfigError", "load_yaml", "merge_config", "campaign_config", "validate_config", "fill_defaults",
           "coerce_values", "parse_assignment", "DEFAULT_SCHEMA", "DEFAULT_CONFIG"]

_ROOT = Path(__file__).resolve().parents[2]
#: The schema shipped with the workflow (repository layout).
DEFAULT_SCHEMA = _ROOT / "workflow" / "schemas" / "config.schema.yaml"
#: The default campaign, the base every --configfile is layered on.
DEFAULT_CONFIG = _ROOT / "config" / "config.yaml"


def load_yaml(path) -> dict:
    """Read a YAML file safely (no tags that build Python objects).

    Raises :class:`ConfigError` naming the file (and the line and column of a YAML
    syntax error) when it is missing, unreadable, not YAML or not a mapping of keys."""
    path = Path(path)
    if not path.exists():
        where = "" if path.is_absolute() else f" (a relative path is read from the working directory {Path.cwd()})"
        raise ConfigError(f"config file {path} not found{where}; check the name")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise ConfigError(f"{path}{where}: not valid YAML ({what}); fix it there (indent with spaces, "
                          "quote text that holds ': ' or '#')") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({type(exc).__name__}: {exc}); check the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: holds a {type(data).__name__}, not a mapping of keys; write it as "
                          "'section:' lines with indented 'key: value' lines")
    return data


def merge_config(base: dict, override: Mapping) -> dict:
    """``override`` layered on a copy of ``base`` as Snakemake layers config files
    (``snakemake.utils.update_config``): a mapping is merged key by key, anything else
    (a number, a list, null) replaces the base's value."""
    out = copy.deepcopy(base) if isinstance(base, Mapping) else {}
    for key, value in override.items():
        if isinstance(value, Mapping):
            out[key] = merge_config(out.get(key, {}), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def fill_defaults(config: dict, schema: dict) -> dict:
    """Return a copy of ``config`` with every missing key set to its schema default (recursively)."""
    out = copy.deepcopy(config) if config is not None else {}
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if isinstance(out.get(key), dict) and sub.get("type") == "object" and "properties" in sub:
            out[key] = fill_defaults(out[key], sub)
    return out


_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _types(schema: dict) -> set:
    t = schema.get("type")
    return set(t) if isinstance(t, list) else ({t} if t else set())


def coerce_values(value, schema: dict):
    """``value`` with numbers, booleans and nulls read as the schema means them.

    YAML 1.1 (PyYAML, Snakemake) reads ``1e-3`` as a string and ``--config`` hands every
    value over as one; ``members: 3.0`` is the integer 3. Guided by the schema: where a
    key takes an integer, a whole float or an integer string becomes an int; where it
    takes a number, a numeric string becomes an int or a float; ``true``/``false`` become
    booleans and ``null``/``~`` None where the key allows them. A key that takes
    strings, a value that means something else (``2.5`` members, ``'many'`` epochs) and
    anything the schema does not describe (``labeller.options``) are left for the
    checks to report."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {k: coerce_values(v, props[k] if k in props else extra if isinstance(extra, dict) else {})
                for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items")
        return [coerce_values(v, items if isinstance(items, dict) else {}) for v in value]
    types = _types(schema)
    if isinstance(value, bool) or not types:
        return value
    if isinstance(value, float) and "integer" in types and "number" not in types and value.is_integer():
        return int(value)
    if isinstance(value, str) and "string" not in types:
        text = value.strip()
        if types & {"integer", "number"} and _INT.fullmatch(text):
            return int(text)
        if types & {"integer", "number"} and _FLOAT.fullmatch(text):
            number = float(text)
            if "number" in types:
                return number
            return int(number) if number.is_integer() else number
        if "boolean" in types and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if "null" in types and text.lower() in ("null", "~", "none"):
            return None
    return value


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
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        inst = error.instance
        if isinstance(inst, float) and "integer" in expected:
            return f"{key}: {inst!r} is not a whole number; give an integer"
        hint = ""
        if isinstance(inst, str) and {"integer", "number"} & set(expected):
            hint = "; give a number, e.g. 0.001 or 1.0e-3"
        return f"{key}: {inst!r} has the wrong type, expected {' or '.join(map(str, expected))}{hint}"
    if v == "uniqueItems":
        seen, dups = set(), []
        for x in error.instance:
            if x in seen and x not in dups:
                dups.append(x)
            seen.add(x)
        return f"{key}: {error.instance} lists {', '.join(map(str, dups))} more than once; give each once"
    if v == "enum":
        return f"{key}: {error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        word = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return f"{key}: {error.instance!r} is out of range, it must be {word} {error.validator_value}"
    if v in ("minItems", "maxItems"):
        return f"{key}: {error.message}"
    return f"{key}: {error.message}"


def _strict_validator():
    """Draft 2020-12, except that a float is never an integer (jsonschema takes 3.0 as one,
    and ``range(3.0)`` fails later, far from the key)."""
    import jsonschema

    checker = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, inst: isinstance(inst, int) and not isinstance(inst, bool))
    return jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=checker)


def _check_schema(config: dict, schema: dict) -> None:
    validator = _strict_validator()(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), _key_path(e)))
    if errors:
        raise ConfigError(_one_line(errors[0]))


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
    config = coerce_values(dict(config or {}), schema)
    _check_schema(config, schema)  # catch unknown keys / types before defaults hide them
    full = fill_defaults(config, schema)
    _check_schema(full, schema)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    from .campaign_molecules import model_elements

    config_checks.check_model(full, schema, model_elements(config_checks.check_molecules(full, base)))
    config_checks.check_counts(full)
    config_checks.check_start(full, base)
    config_checks.check_sampler(full)
    if check_labeller:
        config_checks.check_labeller(full)
    return _canonical(full)


def campaign_config(overrides: Mapping | None = None, base_file=DEFAULT_CONFIG, schema_path=None, base_dir=None,
                    check_labeller: bool = True) -> dict:
    """The validated config of a campaign: ``overrides`` (Snakemake's ``config`` as the
    command line made it: every ``--configfile`` in order, then ``--config``) layered on
    ``base_file`` (``config/config.yaml``; None: on nothing but the schema's defaults).
    See :func:`validate_config` for the rest."""
    base = load_yaml(base_file) if base_file is not None else {}
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"the config must be a mapping of keys, got {type(overrides).__name__}")
    return validate_config(merge_config(base, overrides or {}), schema_path=schema_path, base_dir=base_dir,
                           check_labeller=check_labeller)


def _canonical(value):
    """Keys sorted at every level, so that Snakemake's params (and hence its rerun decisions)
    do not depend on the order keys were written in the YAML file."""
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def parse_assignment(text: str) -> dict:
    """``"training.epochs=5"`` -> ``{"training": {"epochs": 5}}`` (the value read as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--config {text!r}: write KEY=VALUE, e.g. training.epochs=5")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    node: dict = {}
    out = node
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node[part] = {}
        node = node[part]
    node[parts[-1]] = parsed
    return out


def command_line_overrides(files, assignments) -> dict:
    """What ``--configfile FILE...`` and ``--config KEY=VALUE...`` give, layered in that order
    as Snakemake layers them (before they go on top of config/config.yaml)."""
    overrides: dict = {}
    for f in files:
        overrides = merge_config(overrides, load_yaml(f))
    for item in assignments:
        overrides = merge_config(overrides, parse_assignment(item))
    return overrides


def _main(argv=None) -> int:
    """``python -m rarelearn.config [FILE ...] [--config KEY=VALUE ...] [--show]``: the
    campaign's config as the workflow builds it (config/config.yaml, then each FILE as a
    ``--configfile``, then each KEY=VALUE), checked; one line on success or error."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m rarelearn.config",
                                description="Check a rarelearn config the way the workflow loads it: "
                                            "config/config.yaml, then each FILE (as --configfile), then --config.")
    p.add_argument("files", nargs="*", metavar="FILE", help="config files layered in this order")
    p.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE",
                   help="values on top, e.g. training.epochs=5 or training='{epochs: 5}'")
    p.add_argument("--replace-workflow-config", action="store_true",
                   help="do not start from config/config.yaml (as Snakemake's flag of that name)")
    p.add_argument("--show", action="store_true", help="print the complete config as YAML")
    args = p.parse_args(argv)
    try:
        cfg = campaign_config(command_line_overrides(args.files, args.config),
                              base_file=None if args.replace_workflow_config else DEFAULT_CONFIG)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.show:
        print(yaml.safe_dump(cfg, sort_keys=True), end="")
    mol = cfg["molecule"]
    what = mol["structure"] or f"C{mol['alkane']}H{2 * mol['alkane'] + 2}"
    if cfg["molecules"] is not None:
        from .campaign_molecules import campaign_molecules

        def _longer(m):   # a molecule pulled or scanned further than the smd and cogef sections say
            far = [f"{m['pull_steps']} pull steps" if m["pull_steps"] != cfg["smd"]["pull_steps"] else "",
                   f"COGEF to {m['cogef_max_extension']:g} Å"
                   if m["cogef_max_extension"] != cfg["cogef"]["max_extension"] else ""]
            return f" ({', '.join(x for x in far if x)})" if any(far) else ""

        what = "molecules " + ", ".join(m["name"] + ("" if m["weight"] else " (held out)") + _longer(m)
                                        for m in campaign_molecules(cfg))
    print(f"config ok: {what}, {cfg['labeller']['name']}, {cfg['campaign']['max_iterations']} iterations of "
          f"{cfg['model']['members']} {cfg['model']['family']} members x {cfg['training']['epochs']} epochs, "
          f"{cfg['reference']['replicas']} SMD replicas a side", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
