"""Snakemake adapter: iteration 0's data set from the reference MD."""
from rarelearn.steps.train import initial_dataset
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0])
initial_dataset(snakemake.input[0], snakemake.output[0])
