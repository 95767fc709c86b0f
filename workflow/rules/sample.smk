# Sampling: SMD with the best member (one job per replica), UQ, selection (checkpoint).


rule smd:
    conda:
        ENV
    input:
        molecule=MOLECULE,
        ensemble="results/iter_{iteration}/ensemble.pt",
        best="results/iter_{iteration}/best.json",
    output:
        "results/iter_{iteration}/smd/replica_{replica}.h5",
    params:
        smd=config["smd"],
        seed=replica_seed,
        sampler=config["sampler"],
    threads: 1
    log:
        "logs/iter_{iteration}/smd_{replica}.log",
    benchmark:
        "logs/benchmarks/iter_{iteration}/smd_{replica}.tsv"
    script:
        "../scripts/smd.py"


rule uq:
    conda:
        ENV
    input:
        ensemble="results/iter_{iteration}/ensemble.pt",
        replicas=iteration_replicas,
    output:
        "results/iter_{iteration}/uq.h5",
    params:
        selection=config["selection"],
    threads: 1
    log:
        "logs/iter_{iteration}/uq.log",
    script:
        "../scripts/uq.py"


checkpoint select:
    conda:
        ENV
    input:
        uq="results/iter_{iteration}/uq.h5",
        replicas=iteration_replicas,
    output:
        directory("results/iter_{iteration}/selected"),
    params:
        selection=config["selection"],
        batch_size=config["labelling"]["batch_size"],
    log:
        "logs/iter_{iteration}/select.log",
    script:
        "../scripts/select.py"
