"""Snakemake adapter: select, screen and augment frames (or take the HAL runs' frames); write label batches."""
from rarelearn.steps.select import hal_select_step, select_step
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0])
iteration = int(snakemake.wildcards.iteration)
if "hal_runs" in snakemake.input.keys():
    hal_select_step(list(snakemake.input.hal_runs), snakemake.params.selection, snakemake.params.batch_size,
                    iteration, snakemake.output[0])
else:
    select_step(snakemake.input.uq, list(snakemake.input.replicas), snakemake.params.selection,
                snakemake.params.batch_size, iteration, snakemake.output[0])
