"""Snakemake adapter: join the members into an ensemble and pick the best member."""
from rarelearn.steps.train import best_model_step
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0], snakemake.threads)
best_model_step(list(snakemake.input.data), list(snakemake.input.members), snakemake.output.ensemble,
                snakemake.output.best)
