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
        data=molecule_start_data,
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

    # The family on one page: every molecule's errors and the campaign's labels.
    rule family_figure:
        input:
            "results/summary.csv",
        output:
            report("results/figures/family.png", caption="../report/family.rst", category="Campaign"),
        params:
            held_out=[m["name"] for m in MOLECULES.values() if m["weight"] == 0],
            target_kcal=config["campaign"]["stop"]["cogef_target_kcal"],
        conda:
            ENV
        log:
            "logs/family_figure.log",
        script:
            "../scripts/family_figure.py"

    localrules: family_summary, family_figure


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
