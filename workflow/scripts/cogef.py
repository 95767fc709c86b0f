"""Snakemake adapter: a COGEF profile (reference: the labeller; iteration: one member, or the best)."""
import sys

from rarelearn.steps.reference import NoBreakError, reference_cogef
from rarelearn.steps.sample import cogef_step
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0], snakemake.threads)
try:
    if "member" in snakemake.wildcards.keys():
        cogef_step(snakemake.input.molecule, snakemake.params.cogef, snakemake.output.frames,
                   snakemake.output.profile, ensemble_path=snakemake.input.ensemble,
                   member=int(snakemake.wildcards.member))
    elif "ensemble" in snakemake.input.keys():
        cogef_step(snakemake.input.molecule, snakemake.params.cogef, snakemake.output.frames,
                   snakemake.output.profile, ensemble_path=snakemake.input.ensemble, best_json=snakemake.input.best)
    else:
        reference_cogef(snakemake.input.molecule, snakemake.params.cogef, snakemake.params.labeller,
                        snakemake.output.frames, snakemake.output.profile)
except NoBreakError as exc:
    sys.exit(f"error: {exc}")
