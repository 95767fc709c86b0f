# Shared helpers: config validation, wildcards, and named input functions.
import os
import sys

from snakemake.exceptions import IncompleteCheckpointException

from rarelearn.config import ConfigError, campaign_config
from rarelearn.config_checks import COGEF_PATH_KINDS
from rarelearn.campaign_molecules import campaign_molecules, label_budget, model_elements
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
# selection.budget_split says how a family shares out the label budget, not how a molecule
# selects: it leaves the section the UQ and select rules pass on (as smd.batch does).
BUDGET_SPLIT = config["selection"].pop("budget_split")


# The campaign's molecules, by the path segment of their results ({mol}): "" for the one
# molecule of a one-molecule campaign (results/reference/..., as always), a slash and
# molecules/NAME in a family (rarelearn.campaign_molecules). The committee (models, ensemble.pt, best.json)
# is the family's: its files have no {mol}.
MOLECULES = {m["dir"]: m for m in campaign_molecules(config)}
FAMILY = len(MOLECULES) > 1
# Molecules trained on (weight > 0); the others are held out: pulled, scanned and evaluated only.
TRAINED = [d for d, m in MOLECULES.items() if m["weight"] > 0]


def molecule_smd(wildcards):
    """The smd protocol of a molecule's pulls (the labeller's and the potential's): the
    section's, pulled as far as the molecule needs (in a family a long alkane further)."""
    return {**config["smd"], "pull_steps": MOLECULES[wildcards.mol]["pull_steps"]}


def molecule_cogef(wildcards):
    """The cogef section for a molecule's scans: as far as the molecule needs."""
    return {**config["cogef"], "max_extension": MOLECULES[wildcards.mol]["cogef_max_extension"]}


# Frames each molecule selects an iteration (selection.max_frames split by weight).
BUDGET = label_budget(config["selection"]["max_frames"], list(MOLECULES.values()))
# With selection.budget_split cogef_error, by weight x the molecule's COGEF error instead,
# worked out in each select job from the iteration's COGEF profiles (select_selection).
SPLIT_BY_ERROR = FAMILY and BUDGET_SPLIT == "cogef_error"


wildcard_constraints:
    # empty in a one-molecule campaign; a molecule's folder in a family (never empty there,
    # so that the family's own results/summary.csv is no molecule's)
    mol=r"(?:/molecules/[A-Za-z0-9_+-]+)" if FAMILY else r"(?:)",
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
# evaluation.close_replicas: an iteration whose COGEF profile is close to the reference's
# (the replica_plan checkpoint says so) reads its barrier from this many pulls; the ones past
# REPLICAS (CLOSE_EXTRA, numbered on like the reference's rounds) run in one more job.
CLOSE_REPLICAS = config["evaluation"]["close_replicas"]
CLOSE_EXTRA = [f"{r:02d}" for r in range(len(REPLICAS), CLOSE_REPLICAS or 0)]
REPLICA_PLAN = {
    "replicas": len(REPLICAS),
    "close_replicas": CLOSE_REPLICAS,
    "close_kcal": config["evaluation"]["close_kcal"],
}
HAL_SAMPLER = config["sampler"]["kind"] == "hal"
HAL_RUNS = [f"{r:02d}" for r in range(config["sampler"]["runs"])]
SMD_HAL = config["sampler"]["kind"] == "smd+hal"
# Samplers that select frames of the potential's own COGEF path (cogef, smd+cogef).
COGEF_SAMPLER = config["sampler"]["kind"] in COGEF_PATH_KINDS
# Every member's COGEF profile each iteration (evaluation.cogef_members: all), not only the best's.
COGEF_MEMBERS = config["evaluation"]["cogef_members"] == "all"
# model.best_member: cogef_median: the best member is chosen after the members' COGEF scans
# (rule median_member), rule best_model's force-error record is validation.json.
MEDIAN_CHOICE = config["model"]["best_member"] == "cogef_median"
# What the HAL-biased pull (sampler smd+hal) needs of the sampler section: only these keys
# rerun it.
SMD_HAL_SAMPLER = {k: config["sampler"][k] for k in ("kind", "tau_rel", "window")}
# What the HAL runs (sampler hal) see of the sampler section: all of it but the key of the
# cogef samplers added later (so that HAL runs made before it are not redone).
HAL_RUN_SAMPLER = {k: v for k, v in config["sampler"].items()
                   if k not in ("cogef_paths", "labeller_steps", "descent_steps", "descent_images", "descent_beyond",
                                "branch_images",
                                "branch_window", "branch_steps")}
DESCENT = config["sampler"]["descent_steps"] > 0
# What the select checkpoint follows: the selection section (snap_frames only when set), with
# sampler.labeller_steps, descent_steps and branch_images in it only when set (select_step reads them there;
# selections made before they existed are not redone).
SELECT_SELECTION = {
    **{k: v for k, v in config["selection"].items() if k != "snap_frames" or v},
    **({"labeller_steps": config["sampler"]["labeller_steps"]} if config["sampler"]["labeller_steps"] else {}),
    **({"descent": {"steps": config["sampler"]["descent_steps"], "images": config["sampler"]["descent_images"],
                    **({"beyond": config["sampler"]["descent_beyond"]} if config["sampler"]["descent_beyond"] else {})}}
       if DESCENT else {}),
    **({"branch": {"images": config["sampler"]["branch_images"], "window": config["sampler"]["branch_window"],
                   **({"steps": config["sampler"]["branch_steps"]} if config["sampler"]["branch_steps"] else {})}}
       if config["sampler"]["branch_images"] else {}),
}


def select_selection(wildcards):
    """The selection section a molecule's select checkpoint follows: SELECT_SELECTION with
    its share of the label budget (all of it in a one-molecule campaign)."""
    name = MOLECULES[wildcards.mol]["name"]
    selection = {**SELECT_SELECTION, "max_frames": BUDGET[name]}
    if SPLIT_BY_ERROR:  # the share is read off every trained molecule's COGEF error in the job
        selection["budget_split"] = {
            "molecule": name,
            "max_frames": config["selection"]["max_frames"],
            "floor_kcal": config["campaign"]["stop"]["cogef_target_kcal"],
            "weights": {MOLECULES[d]["name"]: MOLECULES[d]["weight"] for d in TRAINED},
            **budget_cogef_files(wildcards),
        }
    return selection


def budget_cogef_files(wildcards):
    """selection.budget_split cogef_error: every trained molecule's COGEF profile of the
    iteration's best member, and the reference's, by molecule name."""
    return {
        "cogef": {MOLECULES[d]["name"]: f"results/iter_{wildcards.iteration}{d}/cogef.json" for d in TRAINED},
        "reference_cogef": {MOLECULES[d]["name"]: f"results/reference{d}/cogef.json" for d in TRAINED},
    }


ENV = "../../environment.yml"
MOLECULE = "results/reference{mol}/molecule.xyz"
ATOM_ENERGIES = "results/reference{mol}/atom_energies.json"
# An iteration's potential: its ensemble and the record of its best member (input of every
# run the potential drives).
ITERATION_POTENTIAL = {
    "ensemble": "results/iter_{iteration}/ensemble.pt",
    "best": "results/iter_{iteration}/best.json",
}
# What every training job reads besides its data set: iteration 0's data (the self energies
# are fitted on it) and the labeller's isolated-atom energies; and the config it follows.
# (every trained molecule's, in a family; the isolated-atom energies of every molecule's elements).
TRAINING_BASE = {
    "base": expand("results/iter_000{mol}/dataset.h5", mol=TRAINED),
    "atom_energies": expand(ATOM_ENERGIES, mol=list(MOLECULES)),
}
# Only the molecules' elements' layer sizes reach training: the defaults of other elements
# (model.hidden) must not rerun it.
ELEMENTS = model_elements(list(MOLECULES.values()))
TRAINING_PARAMS = {
    "model": {
        **config["model"],
        "hidden": {e: config["model"]["hidden"][e] for e in sorted(ELEMENTS)},
    },
    "training": config["training"],
    "elements": ELEMENTS,
}


def molecule_spec(wildcards):
    """The molecule section a molecule is built from (the molecule section itself in a
    one-molecule campaign)."""
    return MOLECULES[wildcards.mol]["spec"]


def structure_file(wildcards):
    """The structure file the molecule is read from (none for a built alkane): an input, so
    that editing it reruns the reference stage and everything after it. Relative to the
    working directory, as the config check reads it."""
    structure = MOLECULES[wildcards.mol]["spec"]["structure"]
    return [structure] if structure is not None else []


def reference_md_params(wildcards):
    """What a molecule's reference MD follows: REFERENCE_MD with the molecule's md_frames
    (reference.md_frames itself for the one molecule of a one-molecule campaign)."""
    return {**REFERENCE_MD, "md_frames": MOLECULES[wildcards.mol]["md_frames"]}


def initial_data(wildcards):
    """Iteration 0's data set of a molecule: its labelled MD set, or none (md_frames 0: an
    empty set of its atoms, which its selections fill); and the data file its entry gives."""
    m = MOLECULES[wildcards.mol]
    start = {"data": m["data"]} if m["data"] else {}
    if m["md_frames"] > 0:
        return {"md": f"results/reference{wildcards.mol}/md.h5", **start}
    return {"molecule": f"results/reference{wildcards.mol}/molecule.xyz", **start}


def attempt_number(wildcards, attempt):
    """Which try of a job this is (1 = first); a retried label job isolates its frames."""
    return attempt


def replica_seed(wildcards):
    """Velocity seed of an SMD replica: the same for the reference and every iteration."""
    return config["reference"]["smd_seed"] + int(wildcards.replica)


def replica_seeds(wildcards=None, replicas=None):
    """Velocity seeds of the replicas named (default REPLICAS), in order (each as
    replica_seed gives it)."""
    return [config["reference"]["smd_seed"] + int(r) for r in (REPLICAS if replicas is None else replicas)]


def round_replicas(r):
    """Names of the reference SMD replicas of round r (0-based): reference.replicas a round,
    numbered on (so seeds differ across rounds), the last round cut at the cap."""
    n = REFERENCE_ROUNDS["per_round"]
    return [f"{k:02d}" for k in range(r * n, min((r + 1) * n, REFERENCE_ROUNDS["max_replicas"]))]


def replicas_through_round(wildcards):
    """What the decision after a round reads: the reference replicas of that round and of
    every round before it."""
    names = [name for r in range(int(wildcards.round) + 1) for name in round_replicas(r)]
    return expand("results/reference{mol}/smd/replica_{replica}.h5", mol=wildcards.mol, replica=names)


_NOTED = set()


def note_once(line):
    """Print a note to the user once per run (input functions are called many times)."""
    if line not in _NOTED:
        _NOTED.add(line)
        print(line, file=sys.stderr)


def reference_rounds(mol):
    """(rounds of reference SMD replicas to run, the files of the decisions that say so).
    Round r+1 runs when the decision after round r (the reference_round checkpoint) asks for
    it; there is no decision after the last round the cap allows, nor any without a target.
    Raises IncompleteCheckpointException while a decision is to be made (a dry run plans up
    to the first)."""
    rounds, decisions = 1, []
    barrier = f"results/reference{mol}/barrier.json"
    if (MAX_REFERENCE_ROUNDS > 1 and not os.path.exists(f"results/reference{mol}/rounds/round_00.json")
            and os.path.exists(barrier) and not being_remade(barrier, "reference_barrier")):
        # as for evaluation.close_replicas: a finished job whose input waits on a checkpoint
        # is not redone by Snakemake itself
        note_once(f"note: {barrier} was made before reference.target_stderr_kcal was set; run once with "
                  "--forcerun reference_barrier to size the reference by its target")
    for r in range(MAX_REFERENCE_ROUNDS - 1):
        path = checkpoints.reference_round.get(mol=mol, round=f"{r:02d}").output[0]
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


def reference_round_decisions(wildcards):
    return reference_rounds(wildcards.mol)[1]


def reference_replicas(wildcards):
    """Every reference SMD replica of a molecule: those of each round that runs
    (reference_rounds); the one molecule's for a rule without {mol} (the studies)."""
    mol = getattr(wildcards, "mol", "")
    names = [name for r in range(reference_rounds(mol)[0]) for name in round_replicas(r)]
    return expand("results/reference{mol}/smd/replica_{replica}.h5", mol=mol, replica=names)


def unseen_test_frames(wildcards):
    return expand("results/reference{mol}/smd/replica_{replica}.h5", mol=wildcards.mol, replica=MAE_REPLICAS)


def molecule_data(iteration, mol):
    """The data set file of molecule ``mol`` (a trained one) that iteration ``iteration``
    trains on: its iteration-0 set for iteration 0, else the previous iteration's merge."""
    if iteration == 0:
        return f"results/iter_000{mol}/dataset.h5"
    return f"results/iter_{iteration - 1:03d}{mol}/merged.h5"


def training_data(wildcards):
    """Data set files an iteration trains on, one per trained molecule: the MD sets for
    iteration 0, else the previous merges."""
    return [molecule_data(int(wildcards.iteration), mol) for mol in TRAINED]


def merge_base(wildcards):
    """The data set a molecule's labelled frames are merged into."""
    return molecule_data(int(wildcards.iteration), wildcards.mol)


def previous_iteration_models(wildcards):
    """What a member needs from the iteration before (inherited split, warm start); iteration
    0's from training.start_from, another campaign's iteration folder, where one is given."""
    i = int(wildcards.iteration)
    needs = config["training"]["split"] == "inherited" or config["training"]["warm_start"]
    start = config["training"]["start_from"]
    if not needs or (i == 0 and start is None):
        return []
    prev = f"results/iter_{i - 1:03d}" if i > 0 else start.rstrip("/")
    return [f"{prev}/best.json"] + [f"{prev}/models/member_{k}.json" for k in MEMBERS] + [
        f"{prev}/models/member_{k}.pt" for k in MEMBERS
    ]


# What a training job of the campaign reads: its data set, iteration 0's and the atom
# energies (TRAINING_BASE), and what it inherits from the iteration before.
TRAINING_INPUT = {"data": training_data, **TRAINING_BASE, "previous": previous_iteration_models}


def of_iteration(pattern, wildcards, **lists):
    """``expand(pattern)`` for the wildcards' iteration (and molecule, where the pattern has
    one) over ``lists`` (members, replicas)."""
    mol = {"mol": wildcards.mol} if "{mol}" in pattern else {}
    return expand(pattern, iteration=wildcards.iteration, **mol, **lists)


def iteration_members(wildcards):
    return of_iteration("results/iter_{iteration}/models/member_{member}.pt", wildcards, member=MEMBERS)


def iteration_member_infos(wildcards):
    return of_iteration("results/iter_{iteration}/models/member_{member}.json", wildcards, member=MEMBERS)


def iteration_member_cogef_profiles(wildcards):
    """Every member's COGEF profile (summary JSON) of an iteration, in member order; none
    with evaluation.cogef_members: best."""
    if not COGEF_MEMBERS:
        return []
    return of_iteration("results/iter_{iteration}{mol}/cogef/member_{member}.json", wildcards, member=MEMBERS)


def median_choice_profiles(wildcards):
    """model.best_member: cogef_median: every member's COGEF profile of every trained
    molecule, molecule by molecule (TRAINED order), members in order within each."""
    return expand("results/iter_{iteration}{mol}/cogef/member_{member}.json", iteration=wildcards.iteration,
                  mol=TRAINED, member=MEMBERS)


def iteration_member_cogef_frames(wildcards):
    """Every member's COGEF images (HDF5) of an iteration, in member order."""
    return of_iteration("results/iter_{iteration}{mol}/cogef/member_{member}.h5", wildcards, member=MEMBERS)


def iteration_benchmarks(wildcards):
    """The folders of the benchmark files of an iteration's jobs (its evaluation sums them):
    the committee's, and in a family the molecule's own."""
    shared = f"logs/benchmarks/iter_{wildcards.iteration}"
    return [shared] + ([shared + wildcards.mol] if wildcards.mol else [])


def iteration_replicas(wildcards, replicas=None):
    """An iteration's SMD replica files: REPLICAS, or the ``replicas`` named."""
    return of_iteration("results/iter_{iteration}{mol}/smd/replica_{replica}.h5", wildcards,
                        replica=REPLICAS if replicas is None else replicas)


def evaluation_replicas(wildcards):
    """The pulls an iteration's barrier is read from: its REPLICAS, and with
    evaluation.close_replicas the CLOSE_EXTRA ones too where its replica_plan checkpoint
    says the potential is close (raises IncompleteCheckpointException until it has run)."""
    replicas = iteration_replicas(wildcards)
    if not CLOSE_EXTRA:
        return replicas
    path = f"results/iter_{wildcards.iteration}{wildcards.mol}/replica_plan.json"
    evaluated = os.path.join(os.path.dirname(path), "evaluation.json")
    if not os.path.exists(path) and os.path.exists(evaluated) and not being_remade(evaluated, "evaluate"):
        # Snakemake does not redo a finished job whose input waits on a checkpoint: an
        # iteration evaluated before the key was turned on keeps its barrier until forced
        # (--forcerun evaluate; forcing replica_plan instead trips a Snakemake checkpoint bug).
        note_once(f"note: {evaluated} was made before evaluation.close_replicas was on; run once with "
                  "--forcerun evaluate to plan its pulls (more where its COGEF profile is close)")
    path = checkpoints.replica_plan.get(iteration=wildcards.iteration, mol=wildcards.mol).output[0]
    try:
        count = int(read_json(path)["replicas"])
    except (ResultFileError, KeyError, TypeError, ValueError) as exc:
        what = exc if isinstance(exc, ResultFileError) else f"{path}: no replica count in it; {remake_hint(path)}"
        sys.exit(f"result error: {what}")
    if count <= len(REPLICAS):
        return replicas
    return replicas + iteration_replicas(wildcards, CLOSE_EXTRA)


def sampling_replicas(wildcards):
    """The pulls an iteration scores and selects from: the HAL-biased ones (smd+hal), else
    the best member's own (which the evaluation always uses)."""
    return expand(
        "results/iter_{iteration}{mol}/{kind}/replica_{replica}.h5",
        iteration=wildcards.iteration,
        mol=wildcards.mol,
        kind="smd_hal" if SMD_HAL else "smd",
        replica=REPLICAS,
    )


def hal_run_seed(wildcards):
    """Seed of HAL run r of iteration i: sampler.seed + 1000 i + r."""
    return config["sampler"]["seed"] + 1000 * int(wildcards.iteration) + int(wildcards.hal_run)


def iteration_hal_runs(wildcards):
    return expand(
        "results/iter_{iteration}{mol}/hal/run_{hal_run}.h5",
        iteration=wildcards.iteration,
        mol=wildcards.mol,
        hal_run=HAL_RUNS,
    )


def selection_inputs(wildcards):
    """What the select checkpoint reads: the HAL runs (sampler hal), else the SMD UQ (the
    thresholds, and the frames of sampler smd, smd+hal and smd+cogef) and the potential's
    COGEF path (cogef, smd+cogef)."""
    if HAL_SAMPLER:
        return {"hal_runs": iteration_hal_runs(wildcards)}
    inputs = {
        "uq": f"results/iter_{wildcards.iteration}{wildcards.mol}/uq.h5",
        "replicas": sampling_replicas(wildcards),
    }
    if SPLIT_BY_ERROR:
        files = budget_cogef_files(wildcards)
        inputs["budget_cogef"] = list(files["cogef"].values()) + list(files["reference_cogef"].values())
    if COGEF_SAMPLER:
        inputs["cogef"] = (
            iteration_member_cogef_frames(wildcards)
            if config["sampler"]["cogef_paths"] == "all"
            else [f"results/iter_{wildcards.iteration}{wildcards.mol}/cogef.h5"]
        )
    if COGEF_SAMPLER and DESCENT:   # the best member's path and the member itself
        it = f"results/iter_{wildcards.iteration}"   # the committee is the iteration's, in a family too
        inputs.update(descent_path=f"{it}{wildcards.mol}/cogef.h5", ensemble=f"{it}/ensemble.pt", best=f"{it}/best.json")
    return inputs


def molecule_md_set(wildcards):
    """A molecule's labelled MD set (its labels count in the summary); none without one."""
    if MOLECULES[wildcards.mol]["md_frames"] == 0:
        return []
    return f"results/reference{wildcards.mol}/md.h5"


def molecule_start_data(wildcards):
    """The data file a molecule's entry starts its data set from (its labels count too)."""
    return MOLECULES[wildcards.mol]["data"] or []


def molecule_learning(wildcards):
    """What an evaluation reads of what its molecule learned this iteration (UQ, merge); none
    for a held-out molecule."""
    if wildcards.mol not in TRAINED:
        return {}
    return {
        "uq": f"results/iter_{wildcards.iteration}{wildcards.mol}/uq.h5",
        "merge": f"results/iter_{wildcards.iteration}{wildcards.mol}/merge.json",
    }


def labelling_screen():
    """The rule that screens out labels of unphysical geometries (max |F|, min distance)."""
    return {k: config["labelling"][k] for k in ("max_force", "min_distance")}


def labelled_batches(wildcards):
    """Labelled batches of an iteration: known only after its `select` checkpoint ran."""
    selected = checkpoints.select.get(iteration=wildcards.iteration, mol=wildcards.mol).output[0]
    batches = glob_wildcards(os.path.join(selected, "batch_{batch}.h5")).batch
    return expand(
        "results/iter_{iteration}{mol}/labelled/batch_{batch}.h5",
        iteration=wildcards.iteration,
        mol=wildcards.mol,
        batch=sorted(batches),
    )


def being_remade(path, rule="evaluate"):
    """Whether this run forces `path` (--forcerun of the file or its rule, or --forceall)."""
    forced = {os.path.normpath(str(f)) for f in workflow.dag_settings.forcerun}
    return workflow.dag_settings.forceall or bool(forced & {os.path.normpath(path), rule})


def campaign_iterations():
    """Every iteration's evaluations, one {mol: evaluation.json} per iteration, up to
    max_iterations or the stop rule, which in a family must hold for every trained molecule."""
    iterations, history = [], {mol: [] for mol in MOLECULES}
    for i in range(config["campaign"]["max_iterations"]):
        paths = {}
        for mol in MOLECULES:
            try:
                paths[mol] = checkpoints.evaluate.get(iteration=f"{i:03d}", mol=mol).output.json
            except IncompleteCheckpointException:
                if i > 0 and mol in TRAINED and os.path.exists(f"results/iter_{i:03d}{mol}/selected"):
                    # From iteration 1 on, Snakemake meets this iteration's `select` checkpoint
                    # only while adding the evaluation's job in a checkpoint update, and then
                    # never counts an output of it that exists as created
                    # (snakemake/snakemake#3862): a run resumed between the selection and the
                    # merge would run `merge` without its labelled batches. Asked for here
                    # first, it is counted.
                    checkpoints.select.get(iteration=f"{i:03d}", mol=mol)
                if CLOSE_EXTRA and mol in TRAINED and os.path.exists(f"results/iter_{i:03d}{mol}/replica_plan.json"):
                    # The same for the replica plan: met only inside the evaluation's update, an
                    # existing plan was never counted and `evaluate` ran with its pulls "<TBD>".
                    checkpoints.replica_plan.get(iteration=f"{i:03d}", mol=mol)
                raise
        iterations.append(paths)
        remade = False
        for mol, path in paths.items():
            try:
                history[mol].append(read_json(path))
            except ResultFileError as exc:
                if not being_remade(path):
                    sys.exit(f"result error: {exc}")
                remade = True
        if remade:
            break  # remade by this run; the iterations after it follow once it is
        if all(stop_rule_met(history[mol], config["campaign"]["stop"]) for mol in TRAINED):
            break
    return iterations


def pending_evaluations(wildcards=None):
    """In a family: every molecule's evaluation of the first iteration not yet evaluated
    for all of them, as plain files, so that the molecules' jobs of that iteration are planned
    side by side (campaign_iterations, meeting one evaluate checkpoint at a time, would
    plan one molecule's after the other's). Nothing past the stop rule or max_iterations."""
    if not FAMILY:
        return []
    history = {mol: [] for mol in TRAINED}
    for i in range(config["campaign"]["max_iterations"]):
        paths = {mol: f"results/iter_{i:03d}{mol}/evaluation.json" for mol in MOLECULES}
        if not all(os.path.exists(p) for p in paths.values()):
            return list(paths.values())
        try:
            for mol in TRAINED:
                history[mol].append(read_json(paths[mol]))
        except ResultFileError:
            return []  # campaign_iterations says what is wrong with it
        if all(stop_rule_met(history[mol], config["campaign"]["stop"]) for mol in TRAINED):
            return []
    return []


def campaign_evaluations(wildcards=None):
    """Evaluations of every iteration (campaign_iterations): a molecule's (its figures), or
    every molecule's."""
    mol = getattr(wildcards, "mol", None)
    its = campaign_iterations()
    if mol is not None:
        return [paths[mol] for paths in its]
    return [path for paths in its for path in paths.values()]


# ------------------------------------------------------------------ the potential (rules/potential.smk, family.smk)
from rarelearn.potential import choose_family_iteration, potential_sources


def family_potential(wildcards=None):
    """The files a family's potential is built from: every molecule's evaluations (iteration
    by iteration, molecules in config order), the chosen iteration's committee and best
    member, each trained molecule's data set, UQ and last UQ, every molecule's prepared
    molecule and reference barrier and COGEF profile."""
    its = campaign_iterations()
    histories = {m["name"]: [read_json(paths[mol]) for paths in its] for mol, m in MOLECULES.items()}
    choice = choose_family_iteration(histories, FAMILY_TRAINED, config["campaign"]["stop"])
    i, final = choice["iteration"], choice["final_iteration"]
    return {
        "evaluations": [paths[mol] for paths in its for mol in MOLECULES],
        "ensemble": f"results/iter_{i:03d}/ensemble.pt",
        "best": f"results/iter_{i:03d}/best.json",
        "data": [molecule_data(i, mol) for mol in TRAINED],
        "uq": [f"results/iter_{i:03d}{mol}/uq.h5" for mol in TRAINED],
        "final_uq": [f"results/iter_{final:03d}{mol}/uq.h5" for mol in TRAINED],
        "molecules": expand(MOLECULE, mol=list(MOLECULES)),
        "reference_barriers": expand("results/reference{mol}/barrier.json", mol=list(MOLECULES)),
        "reference_cogefs": expand("results/reference{mol}/cogef.json", mol=list(MOLECULES)),
    }


FAMILY_NAMES = [m["name"] for m in MOLECULES.values()]
FAMILY_TRAINED = [MOLECULES[mol]["name"] for mol in TRAINED]


def chosen_potential(wildcards=None):
    """The files the potential is built from: the campaign's evaluations and the chosen
    iteration's committee, best member, training set and UQ, the last iteration's UQ
    (rarelearn.potential.choose_iteration picks the iteration)."""
    src = potential_sources(campaign_evaluations(), config["campaign"]["stop"])
    src.pop("choice")
    return src
