"""Snakemake adapter: merge the labelled frames into the next data set."""
from rarelearn.steps.label import merge_step
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0])
merge_step(snakemake.input.data, list(snakemake.input.labelled), int(snakemake.wildcards.iteration),
           snakemake.output.merged, snakemake.output.info)
