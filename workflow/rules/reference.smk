# Reference stage: the molecule, the labelled 500 K MD set, labelled SMD replicas, the barrier
# (read up to the break), and the labeller's COGEF profile. With reference.target_stderr_kcal
# the SMD replicas run in rounds, a checkpoint after each deciding whether another is needed.


rule reference_molecule:
    conda:
        ENV
    input:
        structure_file,
    output:
        molecule=MOLECULE,
        atom_energies=ATOM_ENERGIES,
    params:
        molecule=molecule_spec,
        labeller=config["labeller"],
    log:
        "logs/reference{mol}/molecule.log",
    script:
        "../scripts/reference_molecule.py"


rule reference_md:
    conda:
        ENV
    input:
        molecule=MOLECULE,
    output:
        "results/reference{mol}/md.h5",
    params:
        reference=reference_md_params,
        smd=config["smd"],
        labeller=config["labeller"],
    threads: 1
    log:
        "logs/reference{mol}/md.log",
    benchmark:
        "logs/benchmarks/reference{mol}/md.tsv"
    script:
        "../scripts/reference_md.py"


rule reference_smd:
    conda:
        ENV
    input:
        molecule=MOLECULE,
    output:
        "results/reference{mol}/smd/replica_{replica}.h5",
    params:
        smd=molecule_smd,
        labeller=config["labeller"],
        seed=replica_seed,
    threads: 1
    log:
        "logs/reference{mol}/smd_{replica}.log",
    benchmark:
        "logs/benchmarks/reference{mol}/smd_{replica}.tsv"
    script:
        "../scripts/smd.py"


# After round RR of an adaptive reference: whether the standard error of E_a over the replicas
# so far calls for round RR+1 (rarelearn.chem.barrier.rounds_to_go).
checkpoint reference_round:
    conda:
        ENV
    input:
        replicas=replicas_through_round,
        molecule=MOLECULE,
    output:
        "results/reference{mol}/rounds/round_{round}.json",
    params:
        rounds=REFERENCE_ROUNDS,
    log:
        "logs/reference{mol}/round_{round}.log",
    script:
        "../scripts/reference_round.py"


rule reference_barrier:
    conda:
        ENV
    input:
        replicas=reference_replicas,
        decisions=reference_round_decisions,
        molecule=MOLECULE,
    output:
        "results/reference{mol}/barrier.json",
    params:
        rounds=REFERENCE_ROUNDS,
    log:
        "logs/reference{mol}/barrier.log",
    script:
        "../scripts/barrier.py"


rule reference_cogef:
    conda:
        ENV
    input:
        molecule=MOLECULE,
    output:
        frames="results/reference{mol}/cogef.h5",
        profile="results/reference{mol}/cogef.json",
    params:
        cogef=molecule_cogef,
        labeller=config["labeller"],
    threads: 1
    log:
        "logs/reference{mol}/cogef.log",
    benchmark:
        "logs/benchmarks/reference{mol}/cogef.tsv"
    script:
        "../scripts/cogef.py"
