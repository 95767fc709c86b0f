"""Snakemake adapter: the best member's COGEF profile, picked from every member's."""
from rarelearn.steps.common import setup_logging
from rarelearn.steps.sample import best_cogef_step

setup_logging(snakemake.log[0])
best_cogef_step(snakemake.input.best, list(snakemake.input.profiles), list(snakemake.input.frames),
                snakemake.output.frames, snakemake.output.profile)
