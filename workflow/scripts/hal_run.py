"""Snakemake adapter: one HAL run (biased committee MD until the stop criterion fires)."""
from rarelearn.steps.sample import hal_run
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0], snakemake.threads)
hal_run(snakemake.input.molecule, snakemake.input.ensemble, snakemake.params.sampler, snakemake.params.timestep_fs,
        snakemake.params.seed, snakemake.output[0], iteration=int(snakemake.wildcards.iteration))
