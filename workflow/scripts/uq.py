"""Snakemake adapter: ensemble energy spread over every SMD frame."""
from rarelearn.steps.common import setup_logging
from rarelearn.steps.select import uq_step

setup_logging(snakemake.log[0], snakemake.threads)
uq_step(snakemake.input.ensemble, list(snakemake.input.replicas), snakemake.params.selection,
        snakemake.output[0])
