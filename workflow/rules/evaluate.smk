# Evaluation of an iteration: ΔE_a against the reference, MAE on unseen reference SMD frames.
# A checkpoint, so that the optional stop rule can end the campaign early.


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
    output:
        json="results/iter_{iteration}/evaluation.json",
        predictions="results/iter_{iteration}/unseen_predictions.json",
    conda:
        ENV
    threads: 1
    log:
        "logs/iter_{iteration}/evaluate.log",
    benchmark:
        "logs/benchmarks/iter_{iteration}/evaluate.tsv"
    script:
        "../scripts/evaluate.py"
