"""Snakemake adapter: the baselines' barriers against the reference, table and figure (Fig. 2c/2d)."""
from rarelearn.steps.common import setup_logging
from rarelearn.reporting.studies import baselines_step

setup_logging(snakemake.log[0])
baselines_step(list(snakemake.input.reference),
               {"equilibrium": list(snakemake.input.equilibrium), "smd_frames": list(snakemake.input.smd_frames)},
               snakemake.output.json, snakemake.output.csv, snakemake.output.png,
               training_sets={"equilibrium": snakemake.input.equilibrium_data,
                              "smd_frames": snakemake.input.smd_frames_data})
