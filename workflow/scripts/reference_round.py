"""Snakemake adapter: after a round of reference SMD replicas, whether another is needed."""
from rarelearn.steps.common import setup_logging
from rarelearn.steps.reference import reference_round

setup_logging(snakemake.log[0])
reference_round(list(snakemake.input.replicas), snakemake.output[0], int(snakemake.wildcards.round),
                snakemake.params.rounds, molecule_xyz=snakemake.input.molecule)
