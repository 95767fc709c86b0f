"""Snakemake adapter: the family's summary table, every molecule's rows."""
from rarelearn.steps.common import setup_logging
from rarelearn.steps.evaluate import family_summary_step

setup_logging(snakemake.log[0])
family_summary_step(list(snakemake.input), list(snakemake.params.names), snakemake.output[0])
