# Evaluation of an iteration: the COGEF profile of every member (evaluation.cogef_members:
# all, one job each) or of the best one only (best); ΔE_a (read up to the break) and COGEF
# ΔE_max against the reference, MAE on unseen reference SMD and COGEF frames.
# A checkpoint, so that the optional stop rule can end the campaign early.

if COGEF_MEMBERS:

    use rule reference_cogef as member_cogef with:
        input:
            molecule=MOLECULE,
            ensemble="results/iter_{iteration}/ensemble.pt",
        output:
            frames="results/iter_{iteration}{mol}/cogef/member_{member}.h5",
            profile="results/iter_{iteration}{mol}/cogef/member_{member}.json",
        params:
            cogef=molecule_cogef,
        log:
            "logs/iter_{iteration}{mol}/cogef_member_{member}.log",
        benchmark:
            "logs/benchmarks/iter_{iteration}{mol}/cogef_member_{member}.tsv"

    rule cogef:
        input:
            best="results/iter_{iteration}/best.json",
            profiles=iteration_member_cogef_profiles,
            frames=iteration_member_cogef_frames,
        output:
            frames="results/iter_{iteration}{mol}/cogef.h5",
            profile="results/iter_{iteration}{mol}/cogef.json",
        conda:
            ENV
        log:
            "logs/iter_{iteration}{mol}/cogef.log",
        script:
            "../scripts/best_cogef.py"

else:

    use rule reference_cogef as cogef with:
        input:
            molecule=MOLECULE,
            **ITERATION_POTENTIAL,
        output:
            frames="results/iter_{iteration}{mol}/cogef.h5",
            profile="results/iter_{iteration}{mol}/cogef.json",
        params:
            cogef=molecule_cogef,
        log:
            "logs/iter_{iteration}{mol}/cogef.log",
        benchmark:
            "logs/benchmarks/iter_{iteration}{mol}/cogef.tsv"


# evaluation.close_replicas: how many pulls the iteration's barrier is read from, decided by
# its COGEF profile against the reference's (evaluation_replicas reads the decision).
if CLOSE_EXTRA:

    checkpoint replica_plan:
        conda:
            ENV
        input:
            cogef="results/iter_{iteration}{mol}/cogef.json",
            reference_cogef="results/reference{mol}/cogef.json",
            molecule=MOLECULE,
        output:
            "results/iter_{iteration}{mol}/replica_plan.json",
        params:
            plan=REPLICA_PLAN,
        threads: 1
        log:
            "logs/iter_{iteration}{mol}/replica_plan.log",
        script:
            "../scripts/replica_plan.py"


checkpoint evaluate:
    input:
        unpack(molecule_learning),
        replicas=evaluation_replicas,
        reference="results/reference{mol}/barrier.json",
        unseen=unseen_test_frames,
        ensemble="results/iter_{iteration}/ensemble.pt",
        best="results/iter_{iteration}/best.json",
        infos=iteration_member_infos,
        molecule=MOLECULE,
        cogef="results/iter_{iteration}{mol}/cogef.json",
        member_cogef=iteration_member_cogef_profiles,
        reference_cogef="results/reference{mol}/cogef.json",
        reference_cogef_frames="results/reference{mol}/cogef.h5",
    output:
        json="results/iter_{iteration}{mol}/evaluation.json",
        predictions="results/iter_{iteration}{mol}/unseen_predictions.json",
    params:
        benchmarks=iteration_benchmarks,
    conda:
        ENV
    threads: 1
    log:
        "logs/iter_{iteration}{mol}/evaluate.log",
    benchmark:
        "logs/benchmarks/iter_{iteration}{mol}/evaluate.tsv"
    script:
        "../scripts/evaluate.py"
