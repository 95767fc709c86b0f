"""Snakemake adapter: ΔE_a of the final potential per n-alkane, table and figure (Fig. 7b)."""
from rarelearn.steps.common import setup_logging
from rarelearn.reporting.studies import transfer_step

setup_logging(snakemake.log[0])
transfer_step(snakemake.params.alkanes, list(snakemake.input.labeller), list(snakemake.input.potential),
              int(snakemake.wildcards.iteration), snakemake.output.json, snakemake.output.csv,
              snakemake.output.png, trained_on=snakemake.params.trained_on,
              labeller_cogef=list(snakemake.input.labeller_cogef), potential_cogef=list(snakemake.input.potential_cogef))
