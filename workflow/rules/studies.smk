# Baselines and studies, run only when asked for by name (never by the default target):
#   snakemake --cores 2 baselines      Fig. 2c/2d: ensembles trained on equilibrium MD only and
#                                      on the reference SMD frames, pulled like the reference
#   snakemake --cores 2 transfer       Fig. 7b: the final potential on the n-alkanes of
#                                      studies.transfer.alkanes, against the labeller
#   snakemake --cores 2 strain_rates   SI Fig. S7: the final potential at the pulling speeds of
#                                      studies.strain_rates.velocities, against the labeller
# One job per molecule / speed / replica / member. Every SMD uses the reference's seeds, and
# the potential is pulled by its best member (the paper's sampler). A run identical to one the
# campaign made (same molecule, protocol, seed and potential) is the campaign's file, not redone.
# The studies of the final potential live under results/studies/iter_NNN/, so a longer campaign
# does not make them stale. Once a study has been run, the default target keeps it up to date
# and `snakemake --report` shows its figure (`finished_studies`).
# The studies' helpers (names the rules below use) live beside this file, in their own
# file: `snakemake --lint` wants rules and functions apart.
include: "studies_common.smk"


wildcard_constraints:
    alkane=r"\d+",
    speed=r"[0-9][0-9.e+-]*",


# ------------------------------------------------------------------ baselines (Fig. 2c/2d)
rule smd_frames_dataset:
    conda:
        ENV
    input:
        smd_frames_replicas,
    output:
        f"{SMD_FRAMES}/dataset.h5",
    params:
        stride=STUDIES["baselines"]["frame_stride"],
    log:
        "logs/studies/baselines/smd_frames_dataset.log",
    script:
        "../scripts/study_dataset.py"


rule baseline_train:
    conda:
        ENV
    input:
        data=f"{SMD_FRAMES}/dataset.h5",
        **TRAINING_BASE,
    output:
        model=f"{SMD_FRAMES}/models/member_{{member}}.pt",
        info=f"{SMD_FRAMES}/models/member_{{member}}.json",
    params:
        **TRAINING_PARAMS,
    threads: 1
    resources:
        gpu=0,
    log:
        "logs/studies/baselines/train_{member}.log",
    benchmark:
        "logs/benchmarks/studies/baselines/train_{member}.tsv"
    script:
        "../scripts/study_train.py"


rule baseline_best_model:
    conda:
        ENV
    input:
        data=[f"{SMD_FRAMES}/dataset.h5"],
        members=smd_frames_members,
        infos=smd_frames_member_infos,
    output:
        ensemble=f"{SMD_FRAMES}/ensemble.pt",
        best=f"{SMD_FRAMES}/best.json",
    threads: 1
    log:
        "logs/studies/baselines/best_model.log",
    script:
        "../scripts/best_model.py"


# The equilibrium-only baseline is iteration 0: its SMD replicas are the campaign's.
use rule smd as baseline_smd with:
    input:
        molecule=CAMPAIGN_MOLECULE,
        ensemble=f"{SMD_FRAMES}/ensemble.pt",
        best=f"{SMD_FRAMES}/best.json",
    output:
        f"{SMD_FRAMES}/smd/replica_{{replica}}.h5",
    params:
        smd=config["smd"],
        seed=replica_seed,
        sampler=STUDY_SAMPLER,
    log:
        "logs/studies/baselines/smd_frames/smd_{replica}.log",
    benchmark:
        "logs/benchmarks/studies/baselines/smd_frames/smd_{replica}.tsv"
rule baselines_summary:
    conda:
        ENV
    input:
        reference=reference_replicas,
        equilibrium=equilibrium_baseline_replicas,
        smd_frames=expand(f"{SMD_FRAMES}/smd/replica_{{replica}}.h5", replica=REPLICAS),
        equilibrium_data="results/iter_000/dataset.h5",
        smd_frames_data=f"{SMD_FRAMES}/dataset.h5",
    output:
        json="results/studies/baselines.json",
        csv="results/studies/baselines.csv",
        png=report(
            "results/studies/figures/baselines.png",
            caption="../report/baselines.rst",
            category="Studies",
        ),
    log:
        "logs/studies/baselines.log",
    script:
        "../scripts/study_baselines.py"


rule baselines:
    input:
        rules.baselines_summary.output,


# ------------------------------------------------------------------ transfer (Fig. 7b)
rule transfer_molecule:
    conda:
        ENV
    output:
        molecule="results/studies/transfer/C{alkane}/molecule.xyz",
        atom_energies="results/studies/transfer/C{alkane}/atom_energies.json",
    params:
        molecule=transfer_molecule_spec,
        labeller=config["labeller"],
    log:
        "logs/studies/transfer/C{alkane}/molecule.log",
    script:
        "../scripts/reference_molecule.py"


use rule reference_smd as transfer_labeller_smd with:
    input:
        molecule=transfer_molecule_file,
    output:
        "results/studies/transfer/C{alkane}/labeller/replica_{replica}.h5",
    params:
        smd=transfer_smd,
        labeller=config["labeller"],
        seed=replica_seed,
    log:
        "logs/studies/transfer/C{alkane}/labeller_smd_{replica}.log",
    benchmark:
        "logs/benchmarks/studies/transfer/C{alkane}/labeller_smd_{replica}.tsv"
use rule smd as transfer_potential_smd with:
    input:
        molecule=transfer_molecule_file,
        **ITERATION_POTENTIAL,
    output:
        "results/studies/iter_{iteration}/transfer/C{alkane}/replica_{replica}.h5",
    params:
        smd=transfer_smd,
        seed=replica_seed,
        sampler=STUDY_SAMPLER,
    log:
        "logs/studies/iter_{iteration}/transfer/C{alkane}/smd_{replica}.log",
    benchmark:
        "logs/benchmarks/studies/iter_{iteration}/transfer/C{alkane}/smd_{replica}.tsv"
use rule reference_cogef as transfer_labeller_cogef with:
    input:
        molecule=transfer_molecule_file,
    output:
        frames="results/studies/transfer/C{alkane}/labeller/cogef.h5",
        profile="results/studies/transfer/C{alkane}/labeller/cogef.json",
    params:
        cogef=transfer_cogef_settings,
        labeller=config["labeller"],
    log:
        "logs/studies/transfer/C{alkane}/labeller_cogef.log",
    benchmark:
        "logs/benchmarks/studies/transfer/C{alkane}/labeller_cogef.tsv"


use rule reference_cogef as transfer_potential_cogef with:
    input:
        molecule=transfer_molecule_file,
        **ITERATION_POTENTIAL,
    output:
        frames="results/studies/iter_{iteration}/transfer/C{alkane}/cogef.h5",
        profile="results/studies/iter_{iteration}/transfer/C{alkane}/cogef.json",
    params:
        cogef=transfer_cogef_settings,
    log:
        "logs/studies/iter_{iteration}/transfer/C{alkane}/cogef.log",
    benchmark:
        "logs/benchmarks/studies/iter_{iteration}/transfer/C{alkane}/cogef.tsv"


rule transfer_summary:
    conda:
        ENV
    input:
        labeller=transfer_labeller_runs,
        potential=transfer_potential_runs,
        labeller_cogef=transfer_labeller_cogefs,
        potential_cogef=transfer_potential_cogefs,
    output:
        json="results/studies/iter_{iteration}/transfer.json",
        csv="results/studies/iter_{iteration}/transfer.csv",
        png=report(
            "results/studies/iter_{iteration}/figures/transfer.png",
            caption="../report/transfer.rst",
            category="Studies",
        ),
    params:
        alkanes=TRANSFER_ALKANES,
        trained_on=CAMPAIGN_ALKANE,
    log:
        "logs/studies/iter_{iteration}/transfer.log",
    script:
        "../scripts/study_transfer.py"


rule transfer:
    input:
        final_transfer,


# ------------------------------------------------------------------ strain rates (SI Fig. S7)
use rule reference_smd as strain_labeller_smd with:
    input:
        molecule=CAMPAIGN_MOLECULE,
    output:
        "results/studies/strain_rates/v{speed}/labeller/replica_{replica}.h5",
    params:
        smd=strain_protocol,
        labeller=config["labeller"],
        seed=replica_seed,
    log:
        "logs/studies/strain_rates/v{speed}/labeller_smd_{replica}.log",
    benchmark:
        "logs/benchmarks/studies/strain_rates/v{speed}/labeller_smd_{replica}.tsv"
use rule smd as strain_potential_smd with:
    input:
        molecule=CAMPAIGN_MOLECULE,
        **ITERATION_POTENTIAL,
    output:
        "results/studies/iter_{iteration}/strain_rates/v{speed}/replica_{replica}.h5",
    params:
        smd=strain_protocol,
        seed=replica_seed,
        sampler=STUDY_SAMPLER,
    log:
        "logs/studies/iter_{iteration}/strain_rates/v{speed}/smd_{replica}.log",
    benchmark:
        "logs/benchmarks/studies/iter_{iteration}/strain_rates/v{speed}/smd_{replica}.tsv"
rule strain_rates_summary:
    conda:
        ENV
    input:
        labeller=strain_labeller_runs,
        potential=strain_potential_runs,
        reference_cogef="results/reference/cogef.json",
        cogef="results/iter_{iteration}/cogef.json",
    output:
        json="results/studies/iter_{iteration}/strain_rates.json",
        csv="results/studies/iter_{iteration}/strain_rates.csv",
        png=report(
            "results/studies/iter_{iteration}/figures/strain_rates.png",
            caption="../report/strain_rates.rst",
            category="Studies",
        ),
    params:
        velocities=[float(s) for s in STRAIN_SPEEDS],
        smd=config["smd"],
    log:
        "logs/studies/iter_{iteration}/strain_rates.log",
    script:
        "../scripts/study_strain_rates.py"


rule strain_rates:
    input:
        final_strain_rates,


localrules: smd_frames_dataset, transfer_molecule, baselines_summary, transfer_summary, strain_rates_summary
