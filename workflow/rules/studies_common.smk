# Helpers of the studies (rules/studies.smk, which includes this file): the studies' settings,
# which runs a study reads (the campaign's own where a case repeats it), and their targets.
import glob

from rarelearn.campaign_molecules import alkane_cogef_extension
from rarelearn.reporting.studies import scaled_protocol, speed_label, transfer_protocol

STUDIES = config["studies"]
STUDY_REPLICAS = [f"{r:02d}" for r in range(STUDIES["replicas"])]
TRANSFER_ALKANES = list(STUDIES["transfer"]["alkanes"])
STRAIN_SPEEDS = [speed_label(v) for v in STUDIES["strain_rates"]["velocities"]]
CAMPAIGN_ALKANE = config["molecule"]["alkane"] if config["molecule"]["structure"] is None else None
STUDY_SAMPLER = {"kind": "smd"}
SMD_FRAMES = "results/studies/baselines/smd_frames"
# The studies are of a one-molecule campaign: its molecule's paths have no molecule segment.
CAMPAIGN_MOLECULE = MOLECULE.format(mol="")


def final_iteration():
    """The campaign's last evaluated iteration ('003'): its potential is the one studied."""
    return os.path.basename(os.path.dirname(campaign_evaluations()[-1]))[len("iter_") :]


def campaign_run(side, replica, iteration, same_case):
    """The campaign's own SMD replica when a study run would repeat it exactly, else None:
    the labeller's is the reference's, the potential's that of the iteration (the best
    member's plain SMD, whatever the sampler)."""
    if not same_case or replica not in REPLICAS:
        return None
    if side == "labeller":
        return f"results/reference/smd/replica_{replica}.h5"
    return f"results/iter_{iteration}/smd/replica_{replica}.h5"


def smd_frames_replicas(wildcards=None):
    return expand(
        "results/reference/smd/replica_{replica}.h5",
        replica=REPLICAS[: STUDIES["baselines"]["smd_replicas"]],
    )


def equilibrium_baseline_replicas(wildcards=None):
    """Iteration 0 is the equilibrium-only ensemble: its own SMD replicas serve."""
    return expand("results/iter_000/smd/replica_{replica}.h5", replica=REPLICAS)


def smd_frames_members(wildcards=None):
    return expand(f"{SMD_FRAMES}/models/member_{{member}}.pt", member=MEMBERS)


def smd_frames_member_infos(wildcards=None):
    return expand(f"{SMD_FRAMES}/models/member_{{member}}.json", member=MEMBERS)


def transfer_molecule_file(wildcards):
    """The campaign's own molecule for its alkane, else the study's."""
    if int(wildcards.alkane) == CAMPAIGN_ALKANE:
        return CAMPAIGN_MOLECULE
    return f"results/studies/transfer/C{wildcards.alkane}/molecule.xyz"


def transfer_molecule_spec(wildcards):
    """The campaign's molecule section with another alkane (built and relaxed the same way)."""
    return {**config["molecule"], "alkane": int(wildcards.alkane), "structure": None, "pull": None}


def alkane_protocol(n_carbons):
    """The smd protocol for an alkane: pulled at least studies.transfer.extension_per_bond Å
    per C–C bond."""
    return transfer_protocol(config["smd"], n_carbons, STUDIES["transfer"]["extension_per_bond"])


def transfer_smd(wildcards):
    return alkane_protocol(int(wildcards.alkane))


def study_runs(side, iteration, cases):
    """The SMD replicas of a study, per case and replica: the campaign's own run where the
    case repeats it (``cases``: (folder under results/studies/, same as the campaign?)), else
    the study's, the labeller's under <case>/labeller/, the potential's under iter_NNN/<case>/."""
    runs = []
    for case, same in cases:
        for r in STUDY_REPLICAS:
            study = (
                f"results/studies/{case}/labeller/replica_{r}.h5"
                if side == "labeller"
                else f"results/studies/iter_{iteration}/{case}/replica_{r}.h5"
            )
            runs.append(campaign_run(side, r, iteration, same) or study)
    return runs


def transfer_cases():
    """(folder, same as the campaign) per alkane: its own chain, pulled as the campaign pulls."""
    return [
        (f"transfer/C{n}", n == CAMPAIGN_ALKANE and alkane_protocol(n) == config["smd"])
        for n in TRANSFER_ALKANES
    ]


def alkane_cogef(n_carbons):
    """The cogef section for an alkane: longer chains are scanned further (max_extension
    scaled by the number of C–C bonds against hexane's five)."""
    c = config["cogef"]
    return {**c, "max_extension": alkane_cogef_extension(c["max_extension"], n_carbons)}


def transfer_cogef_settings(wildcards):
    return alkane_cogef(int(wildcards.alkane))


def transfer_cogefs(side, iteration):
    """COGEF profiles per alkane; the campaign's own for its alkane (same molecule and settings)."""
    out = []
    for n in TRANSFER_ALKANES:
        own = n == CAMPAIGN_ALKANE and alkane_cogef(n) == config["cogef"]
        if side == "labeller":
            out.append("results/reference/cogef.json" if own else f"results/studies/transfer/C{n}/labeller/cogef.json")
        else:
            out.append(
                f"results/iter_{iteration}/cogef.json"
                if own
                else f"results/studies/iter_{iteration}/transfer/C{n}/cogef.json"
            )
    return out


def transfer_labeller_cogefs(wildcards):
    return transfer_cogefs("labeller", wildcards.iteration)


def transfer_potential_cogefs(wildcards):
    return transfer_cogefs("potential", wildcards.iteration)


def transfer_labeller_runs(wildcards):
    return study_runs("labeller", wildcards.iteration, transfer_cases())


def transfer_potential_runs(wildcards):
    return study_runs("potential", wildcards.iteration, transfer_cases())


def final_study(study):
    """The files of ``study`` for the campaign's final potential."""
    return expand(
        "results/studies/iter_{iteration}/{file}",
        iteration=final_iteration(),
        file=[f"{study}.csv", f"{study}.json", f"figures/{study}.png"],
    )


def final_transfer(wildcards):
    return final_study("transfer")


def strain_protocol(wildcards):
    """The smd protocol at this speed, pulling as far (pull_steps scaled)."""
    return scaled_protocol(config["smd"], float(wildcards.speed))


def strain_cases():
    """(folder, same as the campaign) per speed: the campaign's own speed."""
    return [(f"strain_rates/v{s}", float(s) == float(config["smd"]["velocity"])) for s in STRAIN_SPEEDS]


def strain_labeller_runs(wildcards):
    return study_runs("labeller", wildcards.iteration, strain_cases())


def strain_potential_runs(wildcards):
    return study_runs("potential", wildcards.iteration, strain_cases())


def final_strain_rates(wildcards):
    return final_study("strain_rates")


def finished_studies(wildcards=None):
    """Study figures already made by their named targets. `all` never starts a study; once one
    ran, `all` keeps it up to date and `snakemake --report` shows its figure."""
    found = glob.glob("results/studies/figures/baselines.png")
    for study in ("transfer", "strain_rates"):
        found += glob.glob(f"results/studies/iter_[0-9][0-9][0-9]/figures/{study}.png")
    return sorted(found)
