"""Snakemake adapter: the best member as the committee's median COGEF maximum."""
from rarelearn.steps.common import setup_logging
from rarelearn.steps.train import median_cogef_step

setup_logging(snakemake.log[0])
names = list(snakemake.params.molecules)
paths = list(snakemake.input.profiles)
per = len(paths) // len(names)
median_cogef_step(snakemake.input.validation, {n: paths[i * per:(i + 1) * per] for i, n in enumerate(names)},
                  snakemake.output.best)
