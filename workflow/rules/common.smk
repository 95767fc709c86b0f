# Shared helpers: config validation, wildcards, and named input functions.
import os
import sys

from snakemake.exceptions import IncompleteCheckpointException

from rarelearn.config import ConfigError, campaign_config
from rarelearn.learning.evaluation import stop_rule_met
from rarelearn.jsonio import ResultFileError, read_json
from rarelearn.atomic import remake_hint


# The campaign's config: config/config.yaml (the default campaign), then what the command
# line gave (Snakemake has already merged every --configfile in order, then --config, into
# `config`), layered as Snakemake layers config files; then validated.
try:
    _validated = campaign_config(
        config,
        base_file=(
            None
            if workflow.config_settings.replace_workflow_config
            else os.path.join(workflow.basedir, "config", "config.yaml")
        ),
        schema_path=os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml"),
    )
except ConfigError as _exc:
    sys.exit(f"config error: {_exc}")
config.clear()
config.update(_validated)
# smd.batch says how the potential's SMD replicas run (one job for all, or one job each),
# not how they pull: it leaves the section every SMD rule passes on as its protocol, so
# the protocol's parameters (and what reruns when they change) are the same either way.
SMD_BATCH = config["smd"].pop("batch")


wildcard_constraints:
    iteration=r"\d{3}",
    member=r"\d+",
    replica=r"\d{2}",
    batch=r"\d{4}",
    hal_run=r"\d{2}",
    round=r"\d{2}",


MEMBERS = list(range(config["model"]["members"]))
REPLICAS = [f"{r:02d}" for r in range(config["reference"]["replicas"])]
# The reference's SMD replicas run in rounds of reference.replicas, the first round being
# REPLICAS; with reference.target_stderr_kcal a checkpoint after each round decides whether
# another is needed (reference_round_decisions), up to reference.max_replicas. Without a
# target: one round, no checkpoint. What the rounds' decisions and the barrier follow:
ADAPTIVE_REFERENCE = config["reference"]["target_stderr_kcal"] is not None
REFERENCE_ROUNDS = {
    "per_round": config["reference"]["replicas"],
    "target_stderr_kcal": config["reference"]["target_stderr_kcal"],
    "max_replicas": config["reference"]["max_replicas"] if ADAPTIVE_REFERENCE else config["reference"]["replicas"],
}
# Rounds the cap allows (the last one runs only up to reference.max_replicas).
MAX_REFERENCE_ROUNDS = -(-REFERENCE_ROUNDS["max_replicas"] // REFERENCE_ROUNDS["per_round"])
# What the reference MD follows: the reference section without the rounds' keys, which say
# how many SMD replicas run, not how the MD runs.
REFERENCE_MD = {k: v for k, v in config["reference"].items() if k not in ("target_stderr_kcal", "max_replicas")}
MAE_REPLICAS = REPLICAS[: config["evaluation"]["mae_replicas"]]
HAL_SAMPLER = config["sampler"]["kind"] == "hal"
HAL_RUNS = [f"{r:02d}" for r in range(config["sampler"]["runs"])]
SMD_HAL = config["sampler"]["kind"] == "smd+hal"
# Samplers that select frames of the potential's own COGEF path (cogef, smd+cogef).
COGEF_SAMPLER = config["sampler"]["kind"] in ("cogef", "smd+cogef")
# Every member's COGEF profile each iteration (evaluation.cogef_members: all), not only the best's.
COGEF_MEMBERS = config["evaluation"]["cogef_members"] == "all"
# What the HAL-biased pull (sampler smd+hal) needs of the sampler section: only these keys
# rerun it.
SMD_HAL_SAMPLER = {k: config["sampler"][k] for k in ("kind", "tau_rel", "window")}
# What the HAL runs (sampler hal) see of the sampler section: all of it but the key of the
# cogef samplers added later (so that HAL runs made before it are not redone).
HAL_RUN_SAMPLER = {k: v for k, v in config["sampler"].items() if k not in ("cogef_paths", "labeller_steps")}
# What the select checkpoint follows: the selection section, with sampler.labeller_steps in it
# only when set (select_step reads it there; selections made before it existed are not redone).
SELECT_SELECTION = {
    **config["selection"],
    **({"labeller_steps": config["sampler"]["labeller_steps"]} if config["sampler"]["labeller_steps"] else {}),
}
ENV = "../../environment.yml"
MOLECULE = "results/reference/molecule.xyz"
ATOM_ENERGIES = "results/reference/atom_energies.json"
# An iteration's potential: its ensemble and the record of its best member (input of every
# run the potential drives).
ITERATION_POTENTIAL = {
    "ensemble": "results/iter_{iteration}/ensemble.pt",
    "best": "results/iter_{iteration}/best.json",
}
# What every training job reads besides its data set: iteration 0's data (the self energies
# are fitted on it) and the labeller's isolated-atom energies; and the config it follows.
TRAINING_BASE = {"base": "results/iter_000/dataset.h5", "atom_energies": ATOM_ENERGIES}
# Only the molecule's elements' layer sizes reach training: the defaults of other elements
# (model.hidden) must not rerun it.
TRAINING_PARAMS = {
    "model": {
        **config["model"],
        "hidden": {e: config["model"]["hidden"][e] for e in sorted(config["molecule"]["elements"])},
    },
    "training": config["training"],
    "elements": config["molecule"]["elements"],
}


def structure_file(wildcards=None):
    """The structure file the molecule is read from (none for a built alkane): an input, so
    that editing it reruns the reference stage and everything after it. Relative to the
    working directory, as the config check reads it."""
    structure = config["molecule"]["structure"]
    return [structure] if structure is not None else []


def attempt_number(wildcards, attempt):
    """Which try of a job this is (1 = first); a retried label job isolates its frames."""
    return attempt


def replica_seed(wildcards):
    """Velocity seed of an SMD replica: the same for the reference and every iteration."""
    return config["reference"]["smd_seed"] + int(wildcards.replica)


def replica_seeds(wildcards=None):
    """Velocity seeds of all replicas, in replica order (each as replica_seed gives it)."""
    return [config["reference"]["smd_seed"] + int(r) for r in REPLICAS]


def round_replicas(r):
    """Names of the reference SMD replicas of round r (0-based): reference.replicas a round,
    numbered on (so seeds differ across rounds), the last round cut at the cap."""
    n = REFERENCE_ROUNDS["per_round"]
    return [f"{k:02d}" for k in range(r * n, min((r + 1) * n, REFERENCE_ROUNDS["max_replicas"]))]


def replicas_through_round(wildcards):
    """What the decision after a round reads: the reference replicas of that round and of
    every round before it."""
    names = [name for r in range(int(wildcards.round) + 1) for name in round_replicas(r)]
    return expand("results/reference/smd/replica_{replica}.h5", replica=names)


def reference_rounds():
    """(rounds of reference SMD replicas to run, the files of the decisions that say so).
    Round r+1 runs when the decision after round r (the reference_round checkpoint) asks for
    it; there is no decision after the last round the cap allows, nor any without a target.
    Raises IncompleteCheckpointException while a decision is to be made (a dry run plans up
    to the first)."""
    rounds, decisions = 1, []
    for r in range(MAX_REFERENCE_ROUNDS - 1):
        path = checkpoints.reference_round.get(round=f"{r:02d}").output[0]
        decisions.append(path)
        try:
            decision = read_json(path)
            more = decision["more"]
        except (ResultFileError, KeyError, TypeError) as exc:
            if being_remade(path, "reference_round"):
                break  # remade by this run; the rounds after it follow once it is
            what = exc if isinstance(exc, ResultFileError) else f"{path}: no decision ('more') in it; {remake_hint(path)}"
            sys.exit(f"result error: {what}")
        if not more:
            break
        rounds += 1
    return rounds, decisions


def reference_round_decisions(wildcards=None):
    return reference_rounds()[1]


def reference_replicas(wildcards=None):
    """Every reference SMD replica: those of each round that runs (reference_rounds)."""
    names = [name for r in range(reference_rounds()[0]) for name in round_replicas(r)]
    return expand("results/reference/smd/replica_{replica}.h5", replica=names)


def unseen_test_frames(wildcards=None):
    return expand("results/reference/smd/replica_{replica}.h5", replica=MAE_REPLICAS)


def training_data(wildcards):
    """Data set an iteration trains on: the MD set for iteration 0, else the previous merge."""
    i = int(wildcards.iteration)
    if i == 0:
        return "results/iter_000/dataset.h5"
    return f"results/iter_{i - 1:03d}/merged.h5"


def previous_iteration_models(wildcards):
    """What a member needs from the iteration before (inherited split, warm start)."""
    i = int(wildcards.iteration)
    needs = config["training"]["split"] == "inherited" or config["training"]["warm_start"]
    if i == 0 or not needs:
        return []
    prev = f"results/iter_{i - 1:03d}"
    return [f"{prev}/best.json"] + [f"{prev}/models/member_{k}.json" for k in MEMBERS] + [
        f"{prev}/models/member_{k}.pt" for k in MEMBERS
    ]


# What a training job of the campaign reads: its data set, iteration 0's and the atom
# energies (TRAINING_BASE), and what it inherits from the iteration before.
TRAINING_INPUT = {"data": training_data, **TRAINING_BASE, "previous": previous_iteration_models}


def of_iteration(pattern, wildcards, **lists):
    """``expand(pattern)`` for the wildcards' iteration over ``lists`` (members, replicas)."""
    return expand(pattern, iteration=wildcards.iteration, **lists)


def iteration_members(wildcards):
    return of_iteration("results/iter_{iteration}/models/member_{member}.pt", wildcards, member=MEMBERS)


def iteration_member_infos(wildcards):
    return of_iteration("results/iter_{iteration}/models/member_{member}.json", wildcards, member=MEMBERS)


def iteration_member_cogef_profiles(wildcards):
    """Every member's COGEF profile (summary JSON) of an iteration, in member order; none
    with evaluation.cogef_members: best."""
    if not COGEF_MEMBERS:
        return []
    return of_iteration("results/iter_{iteration}/cogef/member_{member}.json", wildcards, member=MEMBERS)


def iteration_member_cogef_frames(wildcards):
    """Every member's COGEF images (HDF5) of an iteration, in member order."""
    return of_iteration("results/iter_{iteration}/cogef/member_{member}.h5", wildcards, member=MEMBERS)


def iteration_benchmarks(wildcards):
    """The folder of the benchmark files of an iteration's jobs (its evaluation sums them)."""
    return f"logs/benchmarks/iter_{wildcards.iteration}"


def iteration_replicas(wildcards):
    return of_iteration("results/iter_{iteration}/smd/replica_{replica}.h5", wildcards, replica=REPLICAS)


def sampling_replicas(wildcards):
    """The pulls an iteration scores and selects from: the HAL-biased ones (smd+hal), else
    the best member's own (which the evaluation always uses)."""
    return expand(
        "results/iter_{iteration}/{kind}/replica_{replica}.h5",
        iteration=wildcards.iteration,
        kind="smd_hal" if SMD_HAL else "smd",
        replica=REPLICAS,
    )


def hal_run_seed(wildcards):
    """Seed of HAL run r of iteration i: sampler.seed + 1000 i + r."""
    return config["sampler"]["seed"] + 1000 * int(wildcards.iteration) + int(wildcards.hal_run)


def iteration_hal_runs(wildcards):
    return expand(
        "results/iter_{iteration}/hal/run_{hal_run}.h5",
        iteration=wildcards.iteration,
        hal_run=HAL_RUNS,
    )


def selection_inputs(wildcards):
    """What the select checkpoint reads: the HAL runs (sampler hal), else the SMD UQ (the
    thresholds, and the frames of sampler smd, smd+hal and smd+cogef) and the potential's
    COGEF path (cogef, smd+cogef)."""
    if HAL_SAMPLER:
        return {"hal_runs": iteration_hal_runs(wildcards)}
    inputs = {
        "uq": f"results/iter_{wildcards.iteration}/uq.h5",
        "replicas": sampling_replicas(wildcards),
    }
    if COGEF_SAMPLER:
        inputs["cogef"] = (
            iteration_member_cogef_frames(wildcards)
            if config["sampler"]["cogef_paths"] == "all"
            else [f"results/iter_{wildcards.iteration}/cogef.h5"]
        )
    return inputs


def labelling_screen():
    """The rule that screens out labels of unphysical geometries (max |F|, min distance)."""
    return {k: config["labelling"][k] for k in ("max_force", "min_distance")}


def labelled_batches(wildcards):
    """Labelled batches of an iteration: known only after its `select` checkpoint ran."""
    selected = checkpoints.select.get(iteration=wildcards.iteration).output[0]
    batches = glob_wildcards(os.path.join(selected, "batch_{batch}.h5")).batch
    return expand(
        "results/iter_{iteration}/labelled/batch_{batch}.h5",
        iteration=wildcards.iteration,
        batch=sorted(batches),
    )


def being_remade(path, rule="evaluate"):
    """Whether this run forces `path` (--forcerun of the file or its rule, or --forceall)."""
    forced = {os.path.normpath(str(f)) for f in workflow.dag_settings.forcerun}
    return workflow.dag_settings.forceall or bool(forced & {os.path.normpath(path), rule})


def campaign_evaluations(wildcards=None):
    """Evaluations of every iteration, up to max_iterations or the stop rule."""
    files, history = [], []
    for i in range(config["campaign"]["max_iterations"]):
        try:
            path = checkpoints.evaluate.get(iteration=f"{i:03d}").output.json
        except IncompleteCheckpointException:
            if i > 0 and os.path.exists(f"results/iter_{i:03d}/selected"):
                # From iteration 1 on, Snakemake meets this iteration's `select` checkpoint
                # only while adding the evaluation's job in a checkpoint update, and then
                # never counts an output of it that exists as created
                # (snakemake/snakemake#3862): a run resumed between the selection and the
                # merge would run `merge` without its labelled batches. Asked for here
                # first, it is counted.
                checkpoints.select.get(iteration=f"{i:03d}")
            raise
        files.append(path)
        try:
            history.append(read_json(path))
        except ResultFileError as exc:
            if not being_remade(path):
                sys.exit(f"result error: {exc}")
            break  # remade by this run; the iterations after it follow once it is
        if stop_rule_met(history, config["campaign"]["stop"]):
            break
    return files


# ------------------------------------------------------------------ the potential (rules/potential.smk)
from rarelearn.potential import potential_sources


def chosen_potential(wildcards=None):
    """The files the potential is built from: the campaign's evaluations and the chosen
    iteration's committee, best member, training set and UQ, the last iteration's UQ
    (rarelearn.potential.choose_iteration picks the iteration)."""
    src = potential_sources(campaign_evaluations(), config["campaign"]["stop"])
    src.pop("choice")
    return src
