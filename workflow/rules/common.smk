# Shared helpers: config validation, wildcards, and named input functions.
import json
import os
import sys

from rarelearn.config import ConfigError, validate_config
from rarelearn.evaluation import stop_rule_met


try:
    _validated = validate_config(
        config,
        schema_path=os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml"),
    )
except ConfigError as _exc:
    sys.exit(f"config error: {_exc}")
config.clear()
config.update(_validated)


wildcard_constraints:
    iteration=r"\d{3}",
    member=r"\d+",
    replica=r"\d{2}",
    batch=r"\d{4}",
    hal_run=r"\d{2}",


MEMBERS = list(range(config["model"]["members"]))
REPLICAS = [f"{r:02d}" for r in range(config["reference"]["replicas"])]
MAE_REPLICAS = REPLICAS[: config["evaluation"]["mae_replicas"]]
HAL_SAMPLER = config["sampler"]["kind"] == "hal"
HAL_RUNS = [f"{r:02d}" for r in range(config["sampler"]["runs"])]
# What the SMD rule needs of the sampler: only smd+hal changes the pull, so the hal-only
# keys (and kind smd vs hal, whose replicas are identical) rerun nothing there.
SMD_SAMPLER = (
    {k: config["sampler"][k] for k in ("kind", "tau_rel", "window")}
    if config["sampler"]["kind"] == "smd+hal"
    else {"kind": "smd"}
)
ENV = "../../environment.yml"
MOLECULE = "results/reference/molecule.xyz"
ATOM_ENERGIES = "results/reference/atom_energies.json"


def attempt_number(wildcards, attempt):
    """Which try of a job this is (1 = first); a retried label job isolates its frames."""
    return attempt


def replica_seed(wildcards):
    """Velocity seed of an SMD replica: the same for the reference and every iteration."""
    return config["reference"]["smd_seed"] + int(wildcards.replica)


def reference_replicas(wildcards=None):
    return expand("results/reference/smd/replica_{replica}.h5", replica=REPLICAS)


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


def iteration_members(wildcards):
    return expand(
        "results/iter_{iteration}/models/member_{member}.pt",
        iteration=wildcards.iteration,
        member=MEMBERS,
    )


def iteration_member_infos(wildcards):
    return expand(
        "results/iter_{iteration}/models/member_{member}.json",
        iteration=wildcards.iteration,
        member=MEMBERS,
    )


def iteration_replicas(wildcards):
    return expand(
        "results/iter_{iteration}/smd/replica_{replica}.h5",
        iteration=wildcards.iteration,
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
    """What the select checkpoint reads: the HAL runs (sampler hal), else the SMD UQ."""
    if HAL_SAMPLER:
        return {"hal_runs": iteration_hal_runs(wildcards)}
    return {
        "uq": f"results/iter_{wildcards.iteration}/uq.h5",
        "replicas": iteration_replicas(wildcards),
    }


def labelled_batches(wildcards):
    """Labelled batches of an iteration: known only after its `select` checkpoint ran."""
    selected = checkpoints.select.get(iteration=wildcards.iteration).output[0]
    batches = glob_wildcards(os.path.join(selected, "batch_{batch}.h5")).batch
    return expand(
        "results/iter_{iteration}/labelled/batch_{batch}.h5",
        iteration=wildcards.iteration,
        batch=sorted(batches),
    )


def campaign_evaluations(wildcards=None):
    """Evaluations of every iteration, up to max_iterations or the stop rule."""
    files, history = [], []
    for i in range(config["campaign"]["max_iterations"]):
        path = checkpoints.evaluate.get(iteration=f"{i:03d}").output.json
        files.append(path)
        with open(path) as fh:
            history.append(json.load(fh))
        if stop_rule_met(history, config["campaign"]["stop"]):
            break
    return files
