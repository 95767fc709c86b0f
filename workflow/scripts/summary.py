"""Snakemake adapter: the campaign's summary table (a molecule's, in a family)."""
from rarelearn.dataset import read_frames
from rarelearn.steps.common import setup_logging
from rarelearn.steps.evaluate import summary_step

setup_logging(snakemake.log[0])
# labels before the first selection: the MD set's and those of the data file the molecule starts
# from, each frame once (a campaign's merged.h5 holds its MD set too)
before = [read_frames(p).hashes for p in (snakemake.input.get(k) for k in ("md", "data")) if p]
summary_step(list(snakemake.input.evaluations), snakemake.output[0],
             reference_md_frames=len(set().union(*map(set, before))) if before else 0)
