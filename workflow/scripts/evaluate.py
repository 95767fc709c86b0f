"""Snakemake adapter: evaluate one iteration against the reference."""
from rarelearn.pipeline import evaluate_step, setup_logging

setup_logging(snakemake.log[0], snakemake.threads)
evaluate_step(int(snakemake.wildcards.iteration), list(snakemake.input.replicas), snakemake.input.reference,
              list(snakemake.input.unseen), snakemake.input.ensemble, snakemake.input.best,
              list(snakemake.input.infos), snakemake.input.uq, snakemake.input.merge, snakemake.output.json,
              out_predictions=snakemake.output.predictions, molecule_xyz=snakemake.input.molecule,
              cogef_json=snakemake.input.cogef, reference_cogef_json=snakemake.input.reference_cogef,
              reference_cogef_frames=snakemake.input.reference_cogef_frames)
