# Labelling (one job per batch of selected frames) and the merge into the next data set.


rule label:
    conda:
        ENV
    input:
        "results/iter_{iteration}{mol}/selected/batch_{batch}.h5",
    output:
        "results/iter_{iteration}{mol}/labelled/batch_{batch}.h5",
    params:
        labeller=config["labeller"],
        frame_timeout_s=config["labelling"]["frame_timeout_s"],
        screen=labelling_screen(),
    retries: 2
    threads: 1
    resources:
        attempt=attempt_number,
    log:
        "logs/iter_{iteration}{mol}/label_{batch}.log",
    benchmark:
        "logs/benchmarks/iter_{iteration}{mol}/label_{batch}.tsv"
    script:
        "../scripts/label.py"


rule merge:
    conda:
        ENV
    input:
        data=merge_base,
        labelled=labelled_batches,
    output:
        merged="results/iter_{iteration}{mol}/merged.h5",
        info="results/iter_{iteration}{mol}/merge.json",
    log:
        "logs/iter_{iteration}{mol}/merge.log",
    script:
        "../scripts/merge.py"
