"""Snakemake adapter: iteration 0's data set from the reference MD (none for a molecule
without an MD set)."""
from rarelearn.steps.common import setup_logging
from rarelearn.steps.reference import empty_dataset
from rarelearn.steps.train import initial_dataset

setup_logging(snakemake.log[0])
if "md" in snakemake.input.keys():
    initial_dataset(snakemake.input.md, snakemake.output[0])
else:
    empty_dataset(snakemake.input.molecule, snakemake.output[0])
