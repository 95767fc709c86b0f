"""Snakemake adapter: select, screen and augment frames; write label batches."""
from rarelearn.pipeline import select_step, setup_logging

setup_logging(snakemake.log[0])
select_step(snakemake.input.uq, list(snakemake.input.replicas), snakemake.params.selection,
            snakemake.params.batch_size, int(snakemake.wildcards.iteration), snakemake.output[0])
