"""Issue 7 item 4, the parts that are static: configs are read with yaml.safe_load only, and no
Ray dashboard is opened beyond loopback unless a config says so on purpose. (The record-size
limits are tested in test_warc_reader.py.)"""
from __future__ import annotations

import re

import yaml

from conftest import REPO


def test_yaml_is_only_ever_safe_loaded():
    unsafe = re.compile(r"yaml\.(load|full_load|unsafe_load|load_all)\s*\(|yaml\.(Unsafe|Full)?Loader\b")
    hits = [
        f"{path.relative_to(REPO)}:{n}"
        for folder in ("refinery", "model", "benchmarks", "tests")
        for path in (REPO / folder).rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if unsafe.search(line)
    ]
    assert not hits, hits


def test_local_ray_has_no_dashboard_and_stays_on_loopback():
    source = (REPO / "refinery" / "pipeline.py").read_text()
    init = re.search(r"ray\.init\(num_cpus=.*\)", source).group(0)
    assert "include_dashboard=False" in init and "_node_ip_address=LOCAL_NODE_IP" in init
    assert re.search(r'LOCAL_NODE_IP = .*"127\.0\.0\.2"', source)


def test_cluster_launcher_binds_the_dashboard_to_loopback():
    cfg = yaml.safe_load((REPO / "docker" / "cluster.yaml").read_text())
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in head
    rayjob = yaml.safe_load((REPO / "docker" / "rayjob.yaml").read_text())
    head_spec = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]
    # KubeRay needs the dashboard on the pod network; its Service must stay inside the cluster
    assert head_spec.get("serviceType", "ClusterIP") == "ClusterIP"
