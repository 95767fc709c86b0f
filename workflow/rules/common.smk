# Shared helpers: config validation, wildcards, and named input functions.
import os
import sys

from snakemake.exceptions import IncompleteCheckpointException

from rarelearn.config import ConfigError, campaign_config
from rarelearn.evaluation import stop_rule_met
from rarelearn.pipeline import ResultFileError, read_json


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


MEMBERS = list(range(config["model"]["members"]))
REPLICAS = [f"{r:02d}" for r in range(config["reference"]["replicas"])]
MAE_REPLICAS = REPLICAS[: config["evaluation"]["mae_replicas"]]
HAL_SAMPLER = config["sampler"]["kind"] == "hal"
HAL_RUNS = [f"{r:02d}" for r in range(config["sampler"]["runs"])]
SMD_HAL = config["sampler"]["kind"] == "smd+hal"
# What the HAL-biased pull (sampler smd+hal) needs of the sampler section: only these keys
# rerun it.
SMD_HAL_SAMPLER = {k: config["sampler"][k] for k in ("kind", "tau_rel", "window")}
ENV = "../../environment.yml"
MOLECULE = "results/reference/molecule.xyz"
ATOM_ENERGIES = "results/reference/atom_energies.json"


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
    """What the select checkpoint reads: the HAL runs (sampler hal), else the SMD UQ."""
    if HAL_SAMPLER:
        return {"hal_runs": iteration_hal_runs(wildcards)}
    return {
        "uq": f"results/iter_{wildcards.iteration}/uq.h5",
        "replicas": sampling_replicas(wildcards),
    }


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


def being_remade(path):
    """Whether this run forces `path` (--forcerun of the file or its rule, or --forceall)."""
    forced = {os.path.normpath(str(f)) for f in workflow.dag_settings.forcerun}
    return workflow.dag_settings.forceall or bool(forced & {os.path.normpath(path), "evaluate"})


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


# ------------------------------------------------------------------ studies (rules/studies.smk)
import glob

from rarelearn.studies import scaled_protocol, speed_label, transfer_protocol

STUDIES = config["studies"]
STUDY_REPLICAS = [f"{r:02d}" for r in range(STUDIES["replicas"])]
TRANSFER_ALKANES = list(STUDIES["transfer"]["alkanes"])
STRAIN_SPEEDS = [speed_label(v) for v in STUDIES["strain_rates"]["velocities"]]
CAMPAIGN_ALKANE = config["molecule"]["alkane"] if config["molecule"]["structure"] is None else None
STUDY_SAMPLER = {"kind": "smd"}
SMD_FRAMES = "results/studies/baselines/smd_frames"



def final_iteration():
    """The campaign's last evaluated iteration ('003'): its potential is the one studied."""
    return os.path.basename(os.path.dirname(campaign_evaluations()[-1]))[len("iter_") :]


def campaign_run(side, replica, iteration, same_case):
    """The campaign's own SMD replica when a study run would repeat it exactly, else None:
    the labeller's is the reference's, the potential's that of the iteration (the best
    member's plain SMD, whatever the sampler)."""
    if not same_case or replica not in REPLICAS:
        return None
    if side == "labeller":
        return f"results/reference/smd/replica_{replica}.h5"
    return f"results/iter_{iteration}/smd/replica_{replica}.h5"


def smd_frames_replicas(wildcards=None):
    return expand(
        "results/reference/smd/replica_{replica}.h5",
        replica=REPLICAS[: STUDIES["baselines"]["smd_replicas"]],
    )


def equilibrium_baseline_replicas(wildcards=None):
    """Iteration 0 is the equilibrium-only ensemble: its own SMD replicas serve."""
    return expand("results/iter_000/smd/replica_{replica}.h5", replica=REPLICAS)


def smd_frames_members(wildcards=None):
    return expand(f"{SMD_FRAMES}/models/member_{{member}}.pt", member=MEMBERS)


def smd_frames_member_infos(wildcards=None):
    return expand(f"{SMD_FRAMES}/models/member_{{member}}.json", member=MEMBERS)


def transfer_molecule_file(wildcards):
    """The campaign's own molecule for its alkane, else the study's."""
    if int(wildcards.alkane) == CAMPAIGN_ALKANE:
        return MOLECULE
    return f"results/studies/transfer/C{wildcards.alkane}/molecule.xyz"


def transfer_molecule_spec(wildcards):
    """The campaign's molecule section with another alkane (built and relaxed the same way)."""
    return {**config["molecule"], "alkane": int(wildcards.alkane), "structure": None, "pull": None}


def alkane_protocol(n_carbons):
    """The smd protocol for an alkane: pulled at least studies.transfer.extension_per_bond Å
    per C–C bond."""
    return transfer_protocol(config["smd"], n_carbons, STUDIES["transfer"]["extension_per_bond"])


def transfer_smd(wildcards):
    return alkane_protocol(int(wildcards.alkane))


def transfer_runs(side, iteration):
    runs = []
    for n in TRANSFER_ALKANES:
        same = n == CAMPAIGN_ALKANE and alkane_protocol(n) == config["smd"]
        for r in STUDY_REPLICAS:
            study = (
                f"results/studies/transfer/C{n}/labeller/replica_{r}.h5"
                if side == "labeller"
                else f"results/studies/iter_{iteration}/transfer/C{n}/replica_{r}.h5"
            )
            runs.append(campaign_run(side, r, iteration, same) or study)
    return runs


def alkane_cogef(n_carbons):
    """The cogef section for an alkane: longer chains are scanned further (max_extension
    scaled by the number of C–C bonds against hexane's five)."""
    c = config["cogef"]
    return {**c, "max_extension": max(c["max_extension"], c["max_extension"] * (n_carbons - 1) / 5)}


def transfer_cogef_settings(wildcards):
    return alkane_cogef(int(wildcards.alkane))


def transfer_cogefs(side, iteration):
    """COGEF profiles per alkane; the campaign's own for its alkane (same molecule and settings)."""
    out = []
    for n in TRANSFER_ALKANES:
        own = n == CAMPAIGN_ALKANE and alkane_cogef(n) == config["cogef"]
        if side == "labeller":
            out.append("results/reference/cogef.json" if own else f"results/studies/transfer/C{n}/labeller/cogef.json")
        else:
            out.append(
                f"results/iter_{iteration}/cogef.json"
                if own
                else f"results/studies/iter_{iteration}/transfer/C{n}/cogef.json"
            )
    return out


def transfer_labeller_cogefs(wildcards):
    return transfer_cogefs("labeller", wildcards.iteration)


def transfer_potential_cogefs(wildcards):
    return transfer_cogefs("potential", wildcards.iteration)


def transfer_labeller_runs(wildcards):
    return transfer_runs("labeller", wildcards.iteration)


def transfer_potential_runs(wildcards):
    return transfer_runs("potential", wildcards.iteration)


def final_transfer(wildcards):
    return expand(
        "results/studies/iter_{iteration}/{file}",
        iteration=final_iteration(),
        file=["transfer.csv", "transfer.json", "figures/transfer.png"],
    )


def strain_protocol(wildcards):
    """The smd protocol at this speed, pulling as far (pull_steps scaled)."""
    return scaled_protocol(config["smd"], float(wildcards.speed))


def strain_runs(side, iteration):
    runs = []
    for s in STRAIN_SPEEDS:
        same = float(s) == float(config["smd"]["velocity"])
        for r in STUDY_REPLICAS:
            study = (
                f"results/studies/strain_rates/v{s}/labeller/replica_{r}.h5"
                if side == "labeller"
                else f"results/studies/iter_{iteration}/strain_rates/v{s}/replica_{r}.h5"
            )
            runs.append(campaign_run(side, r, iteration, same) or study)
    return runs


def strain_labeller_runs(wildcards):
    return strain_runs("labeller", wildcards.iteration)


def strain_potential_runs(wildcards):
    return strain_runs("potential", wildcards.iteration)


def final_strain_rates(wildcards):
    return expand(
        "results/studies/iter_{iteration}/{file}",
        iteration=final_iteration(),
        file=["strain_rates.csv", "strain_rates.json", "figures/strain_rates.png"],
    )


def finished_studies(wildcards=None):
    """Study figures already made by their named targets. `all` never starts a study; once one
    ran, `all` keeps it up to date and `snakemake --report` shows its figure."""
    found = glob.glob("results/studies/figures/baselines.png")
    for study in ("transfer", "strain_rates"):
        found += glob.glob(f"results/studies/iter_[0-9][0-9][0-9]/figures/{study}.png")
    return sorted(found)


# ------------------------------------------------------------------ the potential (rules/potential.smk)
from rarelearn.potential import potential_sources


def chosen_potential(wildcards=None):
    """The files the potential is built from: the campaign's evaluations and the chosen
    iteration's committee, best member, training set and UQ, the last iteration's UQ
    (rarelearn.potential.choose_iteration picks the iteration)."""
    src = potential_sources(campaign_evaluations(), config["campaign"]["stop"])
    src.pop("choice")
    return src
