# Reference stage: the molecule, the labelled 500 K MD set, labelled SMD replicas, the barrier
# (read up to the break), and the labeller's COGEF profile.


rule reference_molecule:
    conda:
        ENV
    input:
        structure_file,
    output:
        molecule=MOLECULE,
        atom_energies=ATOM_ENERGIES,
    params:
        molecule=config["molecule"],
        labeller=config["labeller"],
    log:
        "logs/reference/molecule.log",
    script:
        "../scripts/reference_molecule.py"


rule reference_md:
    conda:
        ENV
    input:
        molecule=MOLECULE,
    output:
        "results/reference/md.h5",
    params:
        reference=config["reference"],
        smd=config["smd"],
        labeller=config["labeller"],
    threads: 1
    log:
        "logs/reference/md.log",
    benchmark:
        "logs/benchmarks/reference/md.tsv"
    script:
        "../scripts/reference_md.py"


rule reference_smd:
    conda:
        ENV
    input:
        molecule=MOLECULE,
    output:
        "results/reference/smd/replica_{replica}.h5",
    params:
        smd=config["smd"],
        labeller=config["labeller"],
        seed=replica_seed,
    threads: 1
    log:
        "logs/reference/smd_{replica}.log",
    benchmark:
        "logs/benchmarks/reference/smd_{replica}.tsv"
    script:
        "../scripts/smd.py"


rule reference_barrier:
    conda:
        ENV
    input:
        replicas=reference_replicas,
        molecule=MOLECULE,
    output:
        "results/reference/barrier.json",
    log:
        "logs/reference/barrier.log",
    script:
        "../scripts/barrier.py"


rule reference_cogef:
    conda:
        ENV
    input:
        molecule=MOLECULE,
    output:
        frames="results/reference/cogef.h5",
        profile="results/reference/cogef.json",
    params:
        cogef=config["cogef"],
        labeller=config["labeller"],
    threads: 1
    log:
        "logs/reference/cogef.log",
    benchmark:
        "logs/benchmarks/reference/cogef.tsv"
    script:
        "../scripts/cogef.py"
