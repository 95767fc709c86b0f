"""Snakemake adapter: ΔE_a of the final potential per pulling speed, table and figure (SI Fig. S7)."""
from rarelearn.steps.common import setup_logging
from rarelearn.reporting.studies import strain_rates_step

setup_logging(snakemake.log[0])
strain_rates_step(snakemake.params.velocities, list(snakemake.input.labeller), list(snakemake.input.potential),
                  snakemake.params.smd, int(snakemake.wildcards.iteration), snakemake.output.json,
                  snakemake.output.csv, snakemake.output.png,
                  cogef=(snakemake.input.reference_cogef, snakemake.input.cogef))
