"""Snakemake adapter: label one batch with the reference method."""
from rarelearn.steps.label import label_step
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0], snakemake.threads)
label_step(snakemake.input[0], snakemake.params.labeller, snakemake.output[0], attempt=snakemake.resources.attempt,
           frame_timeout_s=snakemake.params.frame_timeout_s, screen=snakemake.params.screen)
