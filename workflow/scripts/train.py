"""Snakemake adapter: train one ensemble member (on every trained molecule's data set)."""
import os

from rarelearn.steps.common import setup_logging
from rarelearn.steps.train import train_member_step

setup_logging(snakemake.log[0], snakemake.threads)
iteration = int(snakemake.wildcards.iteration)
previous = os.path.dirname(snakemake.input.previous[0]) if snakemake.input.previous else None
train_member_step(list(snakemake.input.data), list(snakemake.input.atom_energies), snakemake.params.model,
                  snakemake.params.training, snakemake.params.elements, iteration,
                  int(snakemake.wildcards.member), snakemake.output.model, snakemake.output.info,
                  previous_dir=previous, base_data_path=list(snakemake.input.base))
