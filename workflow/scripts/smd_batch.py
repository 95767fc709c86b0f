"""Snakemake adapter: the potential's SMD replicas of one iteration as one batched job."""
from rarelearn.steps.common import setup_logging
from rarelearn.steps.sample import smd_batch_step

setup_logging(snakemake.log[0], snakemake.threads)
smd_batch_step(snakemake.input.molecule, snakemake.params.smd, snakemake.params.seeds, list(snakemake.output),
               ensemble_path=snakemake.input.ensemble, best_json=snakemake.input.best)
