"""Snakemake adapter: train every ensemble member of an iteration in one job."""
import os

from rarelearn.steps.common import setup_logging
from rarelearn.steps.train import train_ensemble_step

setup_logging(snakemake.log[0], snakemake.threads)
previous = os.path.dirname(snakemake.input.previous[0]) if snakemake.input.previous else None
train_ensemble_step(list(snakemake.input.data), list(snakemake.input.atom_energies), snakemake.params.model,
                    snakemake.params.training, snakemake.params.elements, int(snakemake.wildcards.iteration),
                    list(snakemake.output.models), list(snakemake.output.infos), previous_dir=previous,
                    base_data_path=list(snakemake.input.base))
