"""The workflow's steps: paths and config sections in, files out, no policy. The Snakemake
scripts are thin adapters onto these. Nothing in the package imports this layer."""
