# Campaign summary table (figures and the HTML report build on it).


rule summary:
    conda:
        ENV
    input:
        evaluations=campaign_evaluations,
        md="results/reference/md.h5",
    output:
        "results/summary.csv",
    log:
        "logs/summary.log",
    script:
        "../scripts/summary.py"
