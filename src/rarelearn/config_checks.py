"""The checks of a campaign config that a JSON schema cannot make: across keys, against the
structure files and the labeller (:func:`rarelearn.config.validate_config` runs them on the
filled config). Each raises :class:`ConfigError`, one line naming the key and the fix."""
from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """An invalid configuration; the message is one line naming the key and the fix."""


def check_molecules(config: dict, base_dir: Path) -> list[dict]:
    """The campaign's molecules (:func:`rarelearn.campaign_molecules.campaign_molecules`),
    each as the reference stage will need it; one line naming the entry on a problem."""
    from .campaign_molecules import campaign_molecules, check_structure

    try:
        molecules = campaign_molecules(config)
        for i, m in enumerate(molecules):
            check_structure(m["spec"], base_dir, "molecule" if config.get("molecules") is None else f"molecules[{i}]")
            if m["data"] is not None and not (base_dir / m["data"]).is_file():
                raise ValueError(f"molecules[{i}].data: file {m['data']!r} not found (looked in {base_dir}; a "
                                 "relative path is read from the working directory); give a labelled data set "
                                 "file, e.g. another campaign's results/iter_NNN/merged.h5")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if len(molecules) > 1 and config["model"]["family"] != "ani":
        raise ConfigError(f"model.family: {config['model']['family']} trains on one molecule; a campaign of "
                          "several molecules (molecules:) needs family ani")
    if config["selection"]["budget_split"] == "cogef_error":
        if config["selection"]["max_frames"] is None:
            raise ConfigError("selection.budget_split: cogef_error splits selection.max_frames, which is null "
                              "(no cap); give max_frames a number or use budget_split: weight")
        if config["sampler"]["kind"] == "hal":
            raise ConfigError("selection.budget_split: cogef_error: sampler hal hands over one frame per run and "
                              "has no budget to split; use another sampler or budget_split: weight")
    return molecules


def check_model(config: dict, schema: dict, elements: list) -> None:
    """Every element of the molecule has layer sizes: those given in ``model.hidden``, else the
    schema's default for it (a ``hidden`` a config gives replaces the default as a whole when
    layered, so the default's elements are put back one by one). ``elements``: every molecule's."""
    hidden = config["model"]["hidden"]
    default = schema["properties"]["model"]["properties"]["hidden"].get("default", {})
    for e in elements:
        if e not in hidden and e in default:
            hidden[e] = list(default[e])
    missing = [e for e in elements if e not in hidden]
    if missing:
        raise ConfigError(f"model.hidden: no layer sizes for {', '.join(missing)}; add e.g. "
                          f"{missing[0]}: [192, 160, 128]")


def check_counts(config: dict) -> None:
    """Keys that count reference SMD replicas cannot ask for more than there are (the first
    round's, with an adaptive reference), the adaptive reference's cap holds its first round,
    and evaluation.close_replicas asks for more pulls than every iteration runs."""
    replicas = config["reference"]["replicas"]
    for key, value in (("evaluation.mae_replicas", config["evaluation"]["mae_replicas"]),
                       ("studies.baselines.smd_replicas", config["studies"]["baselines"]["smd_replicas"])):
        if value > replicas:
            raise ConfigError(f"{key}: {value} is more than reference.replicas ({replicas}); lower it or raise "
                              "reference.replicas")
    close = config["evaluation"]["close_replicas"]
    if close is not None and close <= replicas:
        raise ConfigError(f"evaluation.close_replicas: {close} is not more than reference.replicas ({replicas}), "
                          "the pulls every iteration runs; raise it, or null for no more")
    most = config["reference"]["max_replicas"]
    if config["reference"]["target_stderr_kcal"] is not None and most < replicas:
        raise ConfigError(f"reference.max_replicas: {most} is less than reference.replicas ({replicas}), the "
                          "first round; raise it or lower reference.replicas")


def check_start(config: dict, base_dir: Path) -> None:
    """``training.start_from`` is an iteration folder with the files iteration 0's members
    start from (best.json, models/member_K.pt and .json for every member), and warm starts
    are on."""
    start = config["training"]["start_from"]
    if start is None:
        return
    if not config["training"]["warm_start"]:
        raise ConfigError("training.start_from: the members would not start from it with training.warm_start "
                          "false; set warm_start: true or drop start_from")
    folder = base_dir / start
    if not folder.is_dir():
        raise ConfigError(f"training.start_from: folder {start!r} not found (looked in {base_dir}; a relative "
                          "path is read from the working directory); give another campaign's results/iter_NNN")
    needed = ["best.json"] + [f"models/member_{k}.{ext}" for k in range(config["model"]["members"])
                              for ext in ("pt", "json")]
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise ConfigError(f"training.start_from: {start!r} has no {', '.join(missing[:3])}"
                          f"{' ...' if len(missing) > 3 else ''}; give an iteration folder (results/iter_NNN) of a "
                          f"campaign with at least model.members ({config['model']['members']}) members")


#: sampler kinds that compute the potential's COGEF path, and those that select no SMD frames
COGEF_PATH_KINDS = ("cogef", "smd+cogef")
NO_SMD_FRAME_KINDS = ("cogef", "hal")
#: sampler options that need the potential's COGEF path: (key, what it does)
COGEF_PATH_OPTIONS = (
    ("labeller_steps", "relaxes images of the potential's COGEF path"),
    ("descent_steps", "starts the labeller's way down from the potential's COGEF maximum"),
    ("branch_images", "labels images of the potential's COGEF path"),
)
#: sampler options that do something only with another one: (key, its largest idle value, needs, what it does)
DEPENDENT_OPTIONS = (
    ("descent_beyond", 0, "descent_steps", "adds starts of the labeller's way down past the potential's COGEF maximum"),
    ("branch_steps", 1, "branch_images", "relaxes the branch images with the labeller"),
)


def check_sampler(config: dict) -> None:
    """Sampler options a sampler kind does not use, or that need another option: every member's
    COGEF path can be sampled only where every member's profile is made, and so on."""
    sampler, kind = config["sampler"], config["sampler"]["kind"]
    for key, what in COGEF_PATH_OPTIONS:
        if sampler[key] > 0 and kind not in COGEF_PATH_KINDS:
            raise ConfigError(f"sampler.{key}: {sampler[key]} {what}, which sampler.kind {kind!r} does not compute; "
                              f"use kind cogef or smd+cogef, or {key}: 0")
    for key, idle, needs, what in DEPENDENT_OPTIONS:
        if sampler[key] > idle and sampler[needs] == 0:
            raise ConfigError(f"sampler.{key}: {sampler[key]} {what}, and sampler.{needs} is 0; set {needs}, or "
                              f"{key}: 0")
    for key, what in (("fragment_frames", "moves apart the fragments of"), ("snap_frames", "takes frames of")):
        if config["selection"][key] > 0 and kind in NO_SMD_FRAME_KINDS:
            raise ConfigError(f"selection.{key}: {config['selection'][key]} {what} the best member's SMD pulls, "
                              f"which sampler.kind {kind!r} does not select from; use kind smd, smd+cogef or "
                              f"smd+hal, or {key}: 0")
    if config["model"]["best_member"] == "cogef_median" and (
            config["evaluation"]["cogef_members"] != "all" or config["model"]["members"] < 3):
        raise ConfigError("model.best_member: cogef_median takes the median of every member's COGEF maximum; "
                          "it needs evaluation.cogef_members: all and model.members >= 3 (got "
                          f"{config['evaluation']['cogef_members']!r}, {config['model']['members']} members)")
    if sampler["cogef_paths"] == "all" and config["evaluation"]["cogef_members"] != "all":
        raise ConfigError("sampler.cogef_paths: all needs every member's COGEF profile; set "
                          "evaluation.cogef_members: all (or sampler.cogef_paths: best)")


def check_labeller(config: dict) -> None:
    name = config["labeller"]["name"]
    try:
        from rarelearn.chem.labellers import make_labeller
    except ImportError:  # labellers not importable: nothing more to check here
        return
    try:
        make_labeller(name, config["labeller"].get("options") or {})
    except Exception as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith("labeller.") else f"labeller: {msg}") from None
