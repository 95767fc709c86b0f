# Evaluation of an iteration: the best member's COGEF profile; ΔE_a (read up to the break)
# and COGEF ΔE_max against the reference, MAE on unseen reference SMD and COGEF frames.
# A checkpoint, so that the optional stop rule can end the campaign early.


use rule reference_cogef as cogef with:
    input:
        molecule=MOLECULE,
        **ITERATION_POTENTIAL,
    output:
        frames="results/iter_{iteration}/cogef.h5",
        profile="results/iter_{iteration}/cogef.json",
    params:
        cogef=config["cogef"],
    log:
        "logs/iter_{iteration}/cogef.log",
    benchmark:
        "logs/benchmarks/iter_{iteration}/cogef.tsv"


checkpoint evaluate:
    input:
        replicas=iteration_replicas,
        reference="results/reference/barrier.json",
        unseen=unseen_test_frames,
        ensemble="results/iter_{iteration}/ensemble.pt",
        best="results/iter_{iteration}/best.json",
        infos=iteration_member_infos,
        uq="results/iter_{iteration}/uq.h5",
        merge="results/iter_{iteration}/merge.json",
        molecule=MOLECULE,
        cogef="results/iter_{iteration}/cogef.json",
        reference_cogef="results/reference/cogef.json",
        reference_cogef_frames="results/reference/cogef.h5",
    output:
        json="results/iter_{iteration}/evaluation.json",
        predictions="results/iter_{iteration}/unseen_predictions.json",
    params:
        benchmarks=iteration_benchmarks,
    conda:
        ENV
    threads: 1
    log:
        "logs/iter_{iteration}/evaluate.log",
    benchmark:
        "logs/benchmarks/iter_{iteration}/evaluate.tsv"
    script:
        "../scripts/evaluate.py"
