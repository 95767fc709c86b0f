"""Snakemake adapter: ensemble energy spread over every SMD frame."""
from rarelearn.pipeline import setup_logging, uq_step

setup_logging(snakemake.log[0], snakemake.threads)
uq_step(snakemake.input.ensemble, list(snakemake.input.replicas), snakemake.params.selection,
        snakemake.output[0])
