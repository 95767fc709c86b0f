"""Snakemake adapter: a COGEF profile (reference: the labeller; iteration: the best member)."""
import sys

from rarelearn.pipeline import NoBreakError, cogef_step, reference_cogef, setup_logging

setup_logging(snakemake.log[0], snakemake.threads)
try:
    if "ensemble" in snakemake.input.keys():
        cogef_step(snakemake.input.molecule, snakemake.params.cogef, snakemake.output.frames,
                   snakemake.output.profile, ensemble_path=snakemake.input.ensemble, best_json=snakemake.input.best)
    else:
        reference_cogef(snakemake.input.molecule, snakemake.params.cogef, snakemake.params.labeller,
                        snakemake.output.frames, snakemake.output.profile)
except NoBreakError as exc:
    sys.exit(f"error: {exc}")
