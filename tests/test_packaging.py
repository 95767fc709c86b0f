"""The install files agree with each other."""
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _req(lines):
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        name, _, version = line.partition("==")
        out[re.sub(r"\[.*\]", "", name).lower()] = version
    return out


def test_environment_yml_lists_the_same_packages_as_requirements():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    from_env = _req(pip_section)
    from_req = _req((REPO / "requirements.txt").read_text().splitlines())
    from_cpu = _req((REPO / "requirements-cpu.txt").read_text().splitlines())
    assert from_env == {**from_req, **from_cpu}


def test_pyproject_dependencies_are_pinned_in_requirements():
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=\[ ]", d)[0].lower() for d in deps}
    pinned = set(_req((REPO / "requirements.txt").read_text().splitlines())) | {"torch"}
    assert names <= pinned, names - pinned
