# A campaign of several molecules (molecules:): its potential (one committee, a card with a
# section per molecule; rarelearn.potential.family), and the studies, which it does not run:
# their targets say so instead of failing on a missing file. Its held-out molecules (weight 0)
# are its transfer test: evaluated every iteration, in results/summary.csv.
from rarelearn.potential import choose_family_iteration

localrules: potential, baselines, transfer, strain_rates


report: "../report/potential.rst" if os.path.exists("results/potential/card.rst") else "../report/campaign.rst"


def family_potential(wildcards=None):
    """The files a family's potential is built from: every molecule's evaluations (iteration
    by iteration, molecules in config order), the chosen iteration's committee and best
    member, each trained molecule's data set, UQ and last UQ, every molecule's prepared
    molecule and reference barrier and COGEF profile."""
    its = campaign_iterations()
    histories = {m["name"]: [read_json(paths[mol]) for paths in its] for mol, m in MOLECULES.items()}
    choice = choose_family_iteration(histories, FAMILY_TRAINED, config["campaign"]["stop"])
    i, final = choice["iteration"], choice["final_iteration"]
    return {
        "evaluations": [paths[mol] for paths in its for mol in MOLECULES],
        "ensemble": f"results/iter_{i:03d}/ensemble.pt",
        "best": f"results/iter_{i:03d}/best.json",
        "data": [molecule_data(i, mol) for mol in TRAINED],
        "uq": [f"results/iter_{i:03d}{mol}/uq.h5" for mol in TRAINED],
        "final_uq": [f"results/iter_{final:03d}{mol}/uq.h5" for mol in TRAINED],
        "molecules": expand(MOLECULE, mol=list(MOLECULES)),
        "reference_barriers": expand("results/reference{mol}/barrier.json", mol=list(MOLECULES)),
        "reference_cogefs": expand("results/reference{mol}/cogef.json", mol=list(MOLECULES)),
    }


FAMILY_NAMES = [m["name"] for m in MOLECULES.values()]
FAMILY_TRAINED = [MOLECULES[mol]["name"] for mol in TRAINED]


rule potential:
    input:
        unpack(family_potential),
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
        names=FAMILY_NAMES,
        trained=FAMILY_TRAINED,
    conda:
        ENV
    threads: 1
    log:
        "logs/potential.log",
    benchmark:
        "logs/benchmarks/potential.tsv"
    script:
        "../scripts/family_potential.py"


rule baselines:
    params:
        why="baselines: a study of a one-molecule campaign; not run for several molecules (molecules:)",
    conda:
        ENV
    log:
        "logs/studies/baselines.log",
    shell:
        "echo '{params.why}' | tee {log} >&2; exit 1"


rule transfer:
    params:
        why="transfer: a study of a one-molecule campaign; in a campaign of several molecules give the "
        "molecules to test weight: 0 (held out: evaluated every iteration, never trained on)",
    conda:
        ENV
    log:
        "logs/studies/transfer.log",
    shell:
        "echo '{params.why}' | tee {log} >&2; exit 1"


rule strain_rates:
    params:
        why="strain_rates: a study of a one-molecule campaign; not run for several molecules (molecules:)",
    conda:
        ENV
    log:
        "logs/studies/strain_rates.log",
    shell:
        "echo '{params.why}' | tee {log} >&2; exit 1"
