"""Snakemake adapter: train one member of a baseline ensemble (as iteration 0: random split, no warm start)."""
from rarelearn.steps.common import setup_logging
from rarelearn.steps.train import train_member_step

setup_logging(snakemake.log[0], snakemake.threads)
train_member_step(snakemake.input.data, snakemake.input.atom_energies, snakemake.params.model,
                  snakemake.params.training, snakemake.params.elements, 0, int(snakemake.wildcards.member),
                  snakemake.output.model, snakemake.output.info, previous_dir=None,
                  base_data_path=snakemake.input.base)
