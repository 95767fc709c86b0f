# Campaign summary table, the figures, and what `snakemake --report` shows.

FIGURES = [
    "work_curves",
    "barrier_error",
    "mae",
    "parity",
    "uq",
    "label_efficiency",
    "ea_distributions",
    "cogef_profiles",
]


rule summary:
    input:
        evaluations=campaign_evaluations,
        md=molecule_md_set,
    output:
        "results/summary{mol}.csv",
    conda:
        ENV
    log:
        "logs/summary{mol}.log",
    script:
        "../scripts/summary.py"


if FAMILY:

    # The family's table: every molecule's rows (results/summary/molecules/NAME.csv), with
    # the molecule's name and the labels of the whole campaign.
    rule family_summary:
        input:
            expand("results/summary{mol}.csv", mol=list(MOLECULES)),
        output:
            "results/summary.csv",
        params:
            names=[m["name"] for m in MOLECULES.values()],
        conda:
            ENV
        log:
            "logs/summary.log",
        script:
            "../scripts/family_summary.py"

    localrules: family_summary


rule figures:
    input:
        summary="results/summary{mol}.csv",
        evaluations=campaign_evaluations,
        reference=reference_replicas,
        reference_barrier="results/reference{mol}/barrier.json",
        reference_cogef="results/reference{mol}/cogef.json",
    output:
        report(
            expand("results/figures{{mol}}/{figure}.png", figure=FIGURES),
            caption="../report/figures.rst",
            category="Campaign",
        ),
    conda:
        ENV
    log:
        "logs/figures{mol}.log",
    script:
        "../scripts/figures.py"
