# A campaign of several molecules (molecules:) has no potential/ deliverable and no studies
# yet: these targets say so instead of failing on a missing file. Its held-out molecules
# (weight 0) are its transfer test: evaluated every iteration, in results/summary.csv.

localrules: potential, baselines, transfer, strain_rates


rule potential:
    message:
        "results/potential/ (the model card) is built for a one-molecule campaign only"
    shell:
        "echo 'potential: not built for a campaign of several molecules (molecules:); the committee of "
        "each iteration is results/iter_NNN/ensemble.pt, its errors per molecule in results/summary.csv' >&2; exit 1"


rule baselines:
    shell:
        "echo 'baselines: a study of a one-molecule campaign; not run for several molecules (molecules:)' >&2; exit 1"


rule transfer:
    shell:
        "echo 'transfer: a study of a one-molecule campaign; in a campaign of several molecules give the "
        "molecules to test weight: 0 (held out: evaluated every iteration, never trained on)' >&2; exit 1"


rule strain_rates:
    shell:
        "echo 'strain_rates: a study of a one-molecule campaign; not run for several molecules (molecules:)' >&2; exit 1"
