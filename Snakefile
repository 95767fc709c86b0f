# rarelearn: active learning of a neural-network potential through a rare event.
# This file only wires: config, validation, the stages, and the final targets.
from snakemake.utils import min_version

min_version("9.0")

# The config: config/config.yaml, then each --configfile in order, then --config, layered
# and validated in common.smk (one line naming the key or file on any mistake).


include: "workflow/rules/common.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/label.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


if FAMILY:

    include: "workflow/rules/family.smk"

else:

    include: "workflow/rules/studies.smk"
    include: "workflow/rules/potential.smk"



# Light steps run where Snakemake runs, not as cluster jobs.
localrules: reference_molecule, reference_round, reference_barrier, initial_dataset, select, merge, summary, figures


rule all:
    input:
        campaign_evaluations,
        pending_evaluations,
        "results/summary.csv",
        "results/potential/card.json",
        expand("results/figures{mol}/{figure}.png", mol=list(MOLECULES), figure=FIGURES),
        ["results/figures/family.png"] if FAMILY else [],
        [] if FAMILY else finished_studies,
    default_target: True
