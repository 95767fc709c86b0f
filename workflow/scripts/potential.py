"""Snakemake adapter: the potential (results/potential/) from the campaign's chosen iteration."""
import os

from rarelearn.steps.common import setup_logging
from rarelearn.potential import build_potential

setup_logging(snakemake.log[0], snakemake.threads)
i = snakemake.input
build_potential(list(i.evaluations), snakemake.params.stop, i.ensemble, i.best, i.data, i.uq, i.final_uq,
                i.molecule, snakemake.params.labeller, os.path.dirname(snakemake.output.card),
                smd_cfg=snakemake.params.smd, reference_barrier=i.reference_barrier,
                reference_cogef=i.reference_cogef)
