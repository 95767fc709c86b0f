# Sampling: SMD with the best member (the evaluation's pulls: one batched job for all
# replicas, or one job per replica), HAL-biased SMD (sampler smd+hal, one job per
# replica), UQ, HAL runs (sampler hal, one job per run), selection (checkpoint; samplers
# cogef and smd+cogef also take the frames of the iteration's COGEF path, evaluate.smk).


rule smd:
    conda:
        ENV
    input:
        molecule=MOLECULE,
        **ITERATION_POTENTIAL,
    output:
        "results/iter_{iteration}{mol}/smd/replica_{replica}.h5",
    params:
        smd=molecule_smd,
        seed=replica_seed,
        sampler={"kind": "smd"},
    threads: 1
    log:
        "logs/iter_{iteration}{mol}/smd_{replica}.log",
    benchmark:
        "logs/benchmarks/iter_{iteration}{mol}/smd_{replica}.tsv"
    script:
        "../scripts/smd.py"


# smd.batch (default): the replicas of an iteration as one job that evaluates the best
# member once per step on all of them; the same files as rule smd, which makes them with
# smd.batch false.
rule smd_batch:
    conda:
        ENV
    input:
        molecule=MOLECULE,
        **ITERATION_POTENTIAL,
    output:
        expand("results/iter_{{iteration}}{{mol}}/smd/replica_{replica}.h5", replica=REPLICAS),
    params:
        smd=molecule_smd,
        seeds=replica_seeds(),
    threads: 1
    log:
        "logs/iter_{iteration}{mol}/smd_batch.log",
    benchmark:
        "logs/benchmarks/iter_{iteration}{mol}/smd_batch.tsv"
    script:
        "../scripts/smd_batch.py"


if SMD_BATCH:

    ruleorder: smd_batch > smd

else:

    ruleorder: smd > smd_batch


# evaluation.close_replicas: the pulls past REPLICAS of an iteration its replica_plan
# checkpoint finds close, run only then (evaluation_replicas asks for them); one batched job,
# or one job each (rule smd) with smd.batch false.
if CLOSE_EXTRA:

    use rule smd_batch as smd_close with:
        output:
            expand("results/iter_{{iteration}}{{mol}}/smd/replica_{replica}.h5", replica=CLOSE_EXTRA),
        params:
            smd=molecule_smd,
            seeds=replica_seeds(replicas=CLOSE_EXTRA),
        log:
            "logs/iter_{iteration}{mol}/smd_close.log",
        benchmark:
            "logs/benchmarks/iter_{iteration}{mol}/smd_close.tsv"

    if SMD_BATCH:

        ruleorder: smd_close > smd

    else:

        ruleorder: smd > smd_close


# The same pull driven by the HAL-biased committee (sampler smd+hal): its frames are
# scored and selected; the plain pulls above stay the potential's own, for the evaluation.
use rule smd as smd_hal with:
    output:
        "results/iter_{iteration}{mol}/smd_hal/replica_{replica}.h5",
    params:
        smd=molecule_smd,
        seed=replica_seed,
        sampler=SMD_HAL_SAMPLER,
    log:
        "logs/iter_{iteration}{mol}/smd_hal_{replica}.log",
    benchmark:
        "logs/benchmarks/iter_{iteration}{mol}/smd_hal_{replica}.tsv"


rule uq:
    conda:
        ENV
    input:
        ensemble="results/iter_{iteration}/ensemble.pt",
        replicas=sampling_replicas,
    output:
        "results/iter_{iteration}{mol}/uq.h5",
    params:
        selection=config["selection"],
    threads: 1
    log:
        "logs/iter_{iteration}{mol}/uq.log",
    script:
        "../scripts/uq.py"


rule hal_run:
    conda:
        ENV
    input:
        molecule=MOLECULE,
        ensemble="results/iter_{iteration}/ensemble.pt",
    output:
        "results/iter_{iteration}{mol}/hal/run_{hal_run}.h5",
    params:
        sampler=HAL_RUN_SAMPLER,
        timestep_fs=config["smd"]["timestep_fs"],
        seed=hal_run_seed,
    threads: 1
    log:
        "logs/iter_{iteration}{mol}/hal_{hal_run}.log",
    benchmark:
        "logs/benchmarks/iter_{iteration}{mol}/hal_{hal_run}.tsv"
    script:
        "../scripts/hal_run.py"


checkpoint select:
    conda:
        ENV
    input:
        unpack(selection_inputs),
    output:
        directory("results/iter_{iteration}{mol}/selected"),
    params:
        selection=select_selection,
        batch_size=config["labelling"]["batch_size"],
        sampler={k: config["sampler"][k] for k in ("kind", "cogef_frames", "cogef_paths")},
    log:
        "logs/iter_{iteration}{mol}/select.log",
    script:
        "../scripts/select.py"
