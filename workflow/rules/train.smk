# Training: one job per ensemble member (or, with training.fused, one job that trains every
# member sharing the AEV computation), then the ensemble and its best member.


rule initial_dataset:
    conda:
        ENV
    input:
        unpack(initial_data),
    output:
        "results/iter_000{mol}/dataset.h5",
    log:
        "logs/iter_000{mol}/dataset.log",
    script:
        "../scripts/initial_dataset.py"


if config["training"]["fused"]:

    rule train_fused:
        conda:
            ENV
        input:
            **TRAINING_INPUT,
        output:
            models=expand("results/iter_{{iteration}}/models/member_{member}.pt", member=MEMBERS),
            infos=expand("results/iter_{{iteration}}/models/member_{member}.json", member=MEMBERS),
        params:
            **TRAINING_PARAMS,
        threads: len(MEMBERS)
        resources:
            gpu=0,
        log:
            "logs/iter_{iteration}/train_fused.log",
        benchmark:
            "logs/benchmarks/iter_{iteration}/train_fused.tsv"
        script:
            "../scripts/train_fused.py"

else:

    rule train:
        conda:
            ENV
        input:
            **TRAINING_INPUT,
        output:
            model="results/iter_{iteration}/models/member_{member}.pt",
            info="results/iter_{iteration}/models/member_{member}.json",
        params:
            **TRAINING_PARAMS,
        threads: 1
        resources:
            gpu=0,
        log:
            "logs/iter_{iteration}/train_{member}.log",
        benchmark:
            "logs/benchmarks/iter_{iteration}/train_{member}.tsv"
        script:
            "../scripts/train.py"


rule best_model:
    conda:
        ENV
    input:
        data=training_data,
        members=iteration_members,
        infos=iteration_member_infos,
    output:
        ensemble="results/iter_{iteration}/ensemble.pt",
        # with model.best_member cogef_median the force-error record; rule median_member chooses
        best="results/iter_{iteration}/validation.json" if MEDIAN_CHOICE else "results/iter_{iteration}/best.json",
    threads: 1
    log:
        "logs/iter_{iteration}/best_model.log",
    script:
        "../scripts/best_model.py"


if MEDIAN_CHOICE:

    # model.best_member cogef_median: the member at the committee's median COGEF maximum.
    rule median_member:
        conda:
            ENV
        input:
            validation="results/iter_{iteration}/validation.json",
            profiles=median_choice_profiles,
        output:
            best="results/iter_{iteration}/best.json",
        params:
            molecules=[MOLECULES[d]["name"] for d in TRAINED],
        log:
            "logs/iter_{iteration}/median_member.log",
        script:
            "../scripts/median_member.py"
