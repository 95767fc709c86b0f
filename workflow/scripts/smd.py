"""Snakemake adapter: one SMD replica (reference: labeller-driven; iteration: best member)."""
from rarelearn.steps.common import setup_logging
from rarelearn.steps.sample import smd_replica

setup_logging(snakemake.log[0], snakemake.threads)
if "ensemble" in snakemake.input.keys():
    smd_replica(snakemake.input.molecule, snakemake.params.smd, snakemake.params.seed, snakemake.output[0],
                ensemble_path=snakemake.input.ensemble, best_json=snakemake.input.best,
                sampler=snakemake.params.sampler)
else:
    smd_replica(snakemake.input.molecule, snakemake.params.smd, snakemake.params.seed, snakemake.output[0],
                labeller_cfg=snakemake.params.labeller)
