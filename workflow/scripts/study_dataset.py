"""Snakemake adapter: the SMD-frames baseline's training set from reference SMD replicas."""
from rarelearn.steps.common import setup_logging
from rarelearn.reporting.studies import smd_frames_dataset

setup_logging(snakemake.log[0])
smd_frames_dataset(list(snakemake.input), snakemake.output[0], stride=snakemake.params.stride)
