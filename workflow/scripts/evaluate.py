"""Snakemake adapter: evaluate one iteration against the reference; its wall time is the
sum of the benchmark files of the iteration's jobs (``params.benchmarks``: their folders)."""
from glob import glob

from rarelearn.steps.evaluate import evaluate_step
from rarelearn.steps.common import setup_logging

setup_logging(snakemake.log[0], snakemake.threads)
evaluate_step(int(snakemake.wildcards.iteration), list(snakemake.input.replicas), snakemake.input.reference,
              list(snakemake.input.unseen), snakemake.input.ensemble, snakemake.input.best,
              list(snakemake.input.infos), snakemake.input.get("uq"), snakemake.input.get("merge"), snakemake.output.json,
              out_predictions=snakemake.output.predictions, molecule_xyz=snakemake.input.molecule,
              cogef_json=snakemake.input.cogef, reference_cogef_json=snakemake.input.reference_cogef,
              reference_cogef_frames=snakemake.input.reference_cogef_frames,
              member_cogef_jsons=list(snakemake.input.member_cogef),
              benchmark_files=sorted(f for d in snakemake.params.benchmarks for f in glob(f"{d}/*.tsv")))
