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
        md="results/reference/md.h5",
    output:
        "results/summary.csv",
    conda:
        ENV
    log:
        "logs/summary.log",
    script:
        "../scripts/summary.py"


rule figures:
    input:
        summary="results/summary.csv",
        evaluations=campaign_evaluations,
        reference=reference_replicas,
        reference_barrier="results/reference/barrier.json",
        reference_cogef="results/reference/cogef.json",
    output:
        report(
            expand("results/figures/{figure}.png", figure=FIGURES),
            caption="../report/figures.rst",
            category="Campaign",
        ),
    conda:
        ENV
    log:
        "logs/figures.log",
    script:
        "../scripts/figures.py"
