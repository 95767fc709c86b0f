"""Snakemake adapter: the labelled equilibrium MD set."""
from rarelearn.pipeline import reference_md, setup_logging

setup_logging(snakemake.log[0], snakemake.threads)
reference_md(snakemake.input.molecule, snakemake.params.reference, snakemake.params.smd,
             snakemake.params.labeller, snakemake.output[0])
