"""Snakemake adapter: select, screen and augment frames (SMD, COGEF path, or the HAL runs'); write label batches."""
from rarelearn.steps.common import setup_logging
from rarelearn.steps.select import hal_select_step, select_step

setup_logging(snakemake.log[0])
iteration = int(snakemake.wildcards.iteration)
sampler = snakemake.params.sampler
if "hal_runs" in snakemake.input.keys():
    hal_select_step(list(snakemake.input.hal_runs), snakemake.params.selection, snakemake.params.batch_size,
                    iteration, snakemake.output[0])
else:
    select_step(snakemake.input.uq, list(snakemake.input.replicas), snakemake.params.selection,
                snakemake.params.batch_size, iteration, snakemake.output[0],
                cogef_paths=list(snakemake.input.get("cogef", [])) or None, cogef_frames=sampler["cogef_frames"],
                smd=sampler["kind"] != "cogef",
                descent_files=dict(path=snakemake.input.descent_path, ensemble=snakemake.input.ensemble,
                                   best=snakemake.input.best) if "descent_path" in snakemake.input.keys() else None)
