"""Snakemake adapter: build/read the molecule and the isolated-atom energies."""
from rarelearn.steps.reference import prepare_molecule
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0], snakemake.threads)
prepare_molecule(snakemake.params.molecule, snakemake.params.labeller,
                 snakemake.output.molecule, snakemake.output.atom_energies)
