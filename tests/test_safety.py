"""Issue 7 item 4, as behaviour: a config cannot make Refinery run code (YAML is read safely), the
local Ray a run starts serves no dashboard and talks to nothing but loopback, and the cluster
launcher binds the dashboard to loopback. (The record-size limits: test_warc_reader.py and
test_bounds.py.)"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli
from refinery.config import ConfigError, load_config


def test_a_config_that_asks_to_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    configs = []
    for tag, argument in [("!!python/object/apply:os.system", f'["touch {marker}"]'),
                          ("!!python/object/apply:subprocess.call", f'[["touch", "{marker}"]]'),
                          ("!!python/object/new:subprocess.Popen", f'[["touch", "{marker}"]]')]:
        configs.append(tmp_path / f"evil{len(configs)}.yaml")
        configs[-1].write_text(f"output: {tag} {argument}\nstages:\n  - stage: extract\n")
        with pytest.raises(ConfigError, match="not valid YAML"):
            load_config(configs[-1])
    proc = run_cli("run", str(configs[0]), "--input", "whatever.warc.gz", "--output", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


# --- the local Ray of a run ------------------------------------------------------------------------

RAY_PROBE = """
import json, os, sys
import ray
from refinery.pipeline import start_ray
start_ray(1)
ray.get(ray.remote(lambda: 1).remote())  # a worker process up, as in a run
print("PROBE", json.dumps({"nodes": [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]]}), flush=True)
sys.stdin.read()  # the test looks at this process tree, then closes stdin
ray.shutdown()
"""


def process_tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += parents.get(pid, [])
    return tree


def tcp_sockets() -> dict[str, tuple[str, str, int, str, int]]:
    """Every TCP socket of this network namespace by inode: (state, local ip, port, remote ip, port)."""
    def address(hex_addr: str) -> tuple[str, int]:
        ip, port = hex_addr.split(":")
        raw = b"".join(struct.pack("<I", int(ip[i : i + 8], 16)) for i in range(0, len(ip), 8))
        return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw), int(port, 16)

    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            state = {"0A": "LISTEN", "01": "ESTABLISHED"}.get(f[3], f[3])
            found[f[9]] = (state, *address(f[1]), *address(f[2]))
    return found


def sockets_of(pids: list[int]) -> list[tuple[str, str, int, str, int]]:
    table = tcp_sockets()
    out = []
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        out += [table[link[8:-1]] for link in links if link.startswith("socket:[") and link[8:-1] in table]
    return out


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def serves_ray_dashboard(port: int) -> bool:
    """Whether HTTP on the port answers the dashboard's /api/version (JSON naming the Ray version)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.2:{port}/api/version", timeout=5) as r:
            return "ray_version" in r.read(4096).decode("utf-8", "replace")
    except (OSError, urllib.error.HTTPError, ValueError, Exception):
        return False


def test_local_ray_serves_no_dashboard_and_talks_only_over_loopback():
    """What `refinery run` starts without RAY_ADDRESS. Ray 2.60 itself still listens on all
    interfaces (its token-authenticated gRPC ports, and Prometheus metrics ports that it binds to
    loopback only for a node at 127.0.0.1, an address it does not keep): not asserted here."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_USAGE_STATS_ENABLED": "0"}
    probe = subprocess.Popen([sys.executable, "-c", RAY_PROBE], cwd=REPO, env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = ""
        while not line.startswith("PROBE "):  # Ray may print to stdout first
            line = probe.stdout.readline()
            assert line, "the probe ended before Ray was up"
        started = json.loads(line.removeprefix("PROBE "))
        sockets = sockets_of(process_tree(probe.pid))
    finally:
        probe.stdin.close()
        try:
            probe.wait(timeout=120)
        except subprocess.TimeoutExpired:
            probe.kill()
    assert started["nodes"] == ["127.0.0.2"]
    listening = [s for s in sockets if s[0] == "LISTEN"]
    connected = [s for s in sockets if s[0] == "ESTABLISHED"]
    assert listening and connected, "the probe saw no Ray sockets"
    assert all(is_loopback(s[1]) and is_loopback(s[3]) for s in connected), connected
    assert [s for s in listening if serves_ray_dashboard(s[2])] == []
    # what listens on one address listens on loopback
    assert all(is_loopback(s[1]) for s in listening if not ipaddress.ip_address(s[1]).is_unspecified), listening


def test_cluster_launcher_binds_the_dashboard_to_loopback():
    cfg = yaml.safe_load((REPO / "docker" / "cluster.yaml").read_text())
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in head
    rayjob = yaml.safe_load((REPO / "docker" / "rayjob.yaml").read_text())
    head_spec = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]
    # KubeRay needs the dashboard on the pod network; its Service must stay inside the cluster
    assert head_spec.get("serviceType", "ClusterIP") == "ClusterIP"
