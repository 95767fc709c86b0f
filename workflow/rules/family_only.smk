# A campaign of several molecules (molecules:) has no potential/ deliverable and no studies
# yet: these targets say so instead of failing on a missing file. Its held-out molecules
# (weight 0) are its transfer test: evaluated every iteration, in results/summary.csv.

localrules: potential, baselines, transfer, strain_rates


rule potential:
    params:
        why="potential: not built for a campaign of several molecules (molecules:); the committee of each "
        "iteration is results/iter_NNN/ensemble.pt, its errors per molecule in results/summary.csv",
    conda:
        ENV
    log:
        "logs/potential.log",
    shell:
        "echo '{params.why}' | tee {log} >&2; exit 1"


rule baselines:
    params:
        why="baselines: a study of a one-molecule campaign; not run for several molecules (molecules:)",
    conda:
        ENV
    log:
        "logs/studies/baselines.log",
    shell:
        "echo '{params.why}' | tee {log} >&2; exit 1"


rule transfer:
    params:
        why="transfer: a study of a one-molecule campaign; in a campaign of several molecules give the "
        "molecules to test weight: 0 (held out: evaluated every iteration, never trained on)",
    conda:
        ENV
    log:
        "logs/studies/transfer.log",
    shell:
        "echo '{params.why}' | tee {log} >&2; exit 1"


rule strain_rates:
    params:
        why="strain_rates: a study of a one-molecule campaign; not run for several molecules (molecules:)",
    conda:
        ENV
    log:
        "logs/studies/strain_rates.log",
    shell:
        "echo '{params.why}' | tee {log} >&2; exit 1"
