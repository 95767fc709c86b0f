"""Snakemake adapter: iteration 0's data set from the reference MD (none for a molecule
without an MD set), and the data file the molecule's entry starts from."""
from rarelearn.steps.common import setup_logging
from rarelearn.steps.reference import empty_dataset
from rarelearn.steps.train import initial_dataset

setup_logging(snakemake.log[0])
data = snakemake.input.get("data") or None
if "md" in snakemake.input.keys():
    initial_dataset(snakemake.input.md, snakemake.output[0], data=data)
else:
    empty_dataset(snakemake.input.molecule, snakemake.output[0], data=data)
