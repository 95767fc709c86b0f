"""Snakemake adapter: the reference barrier from the labelled SMD replicas, read up to the break."""
import sys

from rarelearn.steps.reference import NoBreakError, reference_barrier
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0])
try:
    reference_barrier(list(snakemake.input.replicas), snakemake.output[0], molecule_xyz=snakemake.input.molecule,
                      rounds=snakemake.params.rounds, decisions=list(snakemake.input.decisions))
except NoBreakError as exc:
    sys.exit(f"error: {exc}")
