"""Snakemake adapter: the family's figure, every molecule on one page."""
from rarelearn.reporting.report import plot_family
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0])
plot_family(snakemake.input[0], list(snakemake.params.held_out), snakemake.output[0],
            target_kcal=snakemake.params.target_kcal)
