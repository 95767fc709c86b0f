"""Snakemake adapter: the reference barrier from the labelled SMD replicas."""
from rarelearn.pipeline import reference_barrier, setup_logging

setup_logging(snakemake.log[0])
reference_barrier(list(snakemake.input), snakemake.output[0])
