"""Snakemake adapter: the campaign's figures."""
import os

from rarelearn.steps.common import setup_logging
from rarelearn.reporting.report import make_figures

setup_logging(snakemake.log[0])
iteration_dirs = [os.path.dirname(p) for p in snakemake.input.evaluations]
make_figures(snakemake.input.summary, list(snakemake.input.reference), iteration_dirs,
             os.path.dirname(snakemake.output[0]), reference_barrier_json=snakemake.input.reference_barrier,
             reference_cogef_json=snakemake.input.reference_cogef)
