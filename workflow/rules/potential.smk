# The potential: the campaign's deliverable in results/potential/ (the chosen iteration's
# committee, its TorchScript export, the model card), made once the campaign has ended:
# after the stop rule is met, or after the last iteration (campaign_evaluations decides
# which iterations there are). Which iteration: rarelearn.potential.choose_iteration.

localrules: potential


# The HTML report (`snakemake --report`) opens with the model card once there is one.
report: "../report/potential.rst" if os.path.exists("results/potential/card.rst") else "../report/campaign.rst"


rule potential:
    input:
        unpack(chosen_potential),
    output:
        ensemble="results/potential/ensemble.pt",
        torchscript="results/potential/potential.ts",
        card="results/potential/card.json",
        card_md="results/potential/card.md",
        card_rst="results/potential/card.rst",
    params:
        stop=config["campaign"]["stop"],
        labeller=config["labeller"],
        smd=config["smd"],
    conda:
        ENV
    threads: 1
    log:
        "logs/potential.log",
    benchmark:
        "logs/benchmarks/potential.tsv"
    script:
        "../scripts/potential.py"
