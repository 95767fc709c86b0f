"""Snakemake adapter: build/read the molecule and the isolated-atom energies."""
from rarelearn.pipeline import prepare_molecule, setup_logging

setup_logging(snakemake.log[0], snakemake.threads)
prepare_molecule(snakemake.params.molecule, snakemake.params.labeller,
                 snakemake.output.molecule, snakemake.output.atom_energies)
