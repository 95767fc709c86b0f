# A campaign of several molecules (molecules:): its potential (one committee, a card with a
# section per molecule; rarelearn.potential.family), and the studies, which it does not run:
# their targets say so instead of failing on a missing file. Its held-out molecules (weight 0)
# are its transfer test: evaluated every iteration, in results/summary.csv.

localrules: potential, baselines, transfer, strain_rates


report: "../report/potential.rst" if os.path.exists("results/potential/card.rst") else "../report/campaign.rst"


rule potential:
    input:
        unpack(family_potential),
    output:
        ensemble="results/potential/ensemble.pt",
        torchscript="results/potential/potential.ts",
        card="results/potential/card.json",
        card_md="results/potential/card.md",
        card_rst="results/potential/card.rst",
    params:
        stop=config["campaign"]["stop"],
        labeller=config["labeller"],
        smd=config["smd"],
        names=FAMILY_NAMES,
        trained=FAMILY_TRAINED,
        pull_steps={m["name"]: m["pull_steps"] for m in MOLECULES.values()},
    conda:
        ENV
    threads: 1
    log:
        "logs/potential.log",
    benchmark:
        "logs/benchmarks/potential.tsv"
    script:
        "../scripts/family_potential.py"


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
