"""Snakemake adapter: the labelled equilibrium MD set."""
from rarelearn.steps.reference import reference_md
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0], snakemake.threads)
reference_md(snakemake.input.molecule, snakemake.params.reference, snakemake.params.smd,
             snakemake.params.labeller, snakemake.output[0])
