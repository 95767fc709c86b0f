"""Snakemake adapter: the campaign's summary table (a molecule's, in a family)."""
from rarelearn.dataset import read_frames
from rarelearn.steps.common import setup_logging
from rarelearn.steps.evaluate import summary_step

setup_logging(snakemake.log[0])
md = snakemake.input.get("md")
summary_step(list(snakemake.input.evaluations), snakemake.output[0],
             reference_md_frames=len(read_frames(md)) if md else 0)
