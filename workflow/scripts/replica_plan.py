"""Snakemake adapter: how many SMD replicas an iteration's barrier is read from (evaluation.close_replicas)."""
from rarelearn.steps.evaluate import replica_plan_step
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0], snakemake.threads)
replica_plan_step(snakemake.input.cogef, snakemake.input.reference_cogef, snakemake.input.molecule,
                  snakemake.params.plan, snakemake.output[0])
