"""Snakemake adapter: a family's potential (results/potential/), one committee, a card per molecule."""
import os

from rarelearn.potential import build_family_potential
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0], snakemake.threads)
i, p = snakemake.input, snakemake.params
names, trained = list(p.names), list(p.trained)
evaluations = list(i.evaluations)  # iteration by iteration, molecules in config order
build_family_potential({name: evaluations[k::len(names)] for k, name in enumerate(names)}, trained, p.stop,
                       i.ensemble, i.best, dict(zip(trained, i.data)), dict(zip(trained, i.uq)),
                       dict(zip(trained, i.final_uq)), dict(zip(names, i.molecules)), p.labeller,
                       os.path.dirname(snakemake.output.card), smd_cfg=p.smd,
                       reference_barriers=dict(zip(names, i.reference_barriers)),
                       reference_cogefs=dict(zip(names, i.reference_cogefs)), pull_steps=p.pull_steps)
