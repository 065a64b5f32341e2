"""`refinery run` on a real two-node Ray cluster on loopback: a head (127.0.0.2, dashboard and job
server on 127.0.0.1) and a worker (127.0.0.3), each a `ray start --block` process of its own with
its own temp dir and one CPU. The pipeline is submitted with `ray job submit --working-dir .` and
must run tasks on both nodes and give the same kept documents and stats as a local single-node
run; a driver with RAY_ADDRESS must join the cluster instead of starting a local Ray.

Token auth (Ray 2.60's default) is on, with a token made for this test and passed to every Ray
process in RAY_AUTH_TOKEN, so ~/.ray/auth_token is neither read nor written.

Stopping: never `ray stop` (it kills every Ray on the machine, other people's test runs included).
Each `ray start --block` runs in a session of its own and is sent SIGTERM (with draining off it
tears its node down at once); then any process that still carries this test's marker variable in
its environment (Ray workers and actors, which sit in process groups of their own, and the job's
driver) is killed by pid."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, run_cli

RAY = Path(sys.executable).with_name("ray")
LIMIT = "200"  # records: keeps both runs short (the sample has 1,171)
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
EXCLUDES = [".venv", ".git", "out", "build", "*.egg-info", "__pycache__", ".pytest_cache"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def marked_pids(marker: str) -> list[int]:
    """Processes whose environment carries REFINERY_TEST_CLUSTER=<marker>: the ones this test's
    cluster started, wherever their process group is."""
    needle = f"REFINERY_TEST_CLUSTER={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            pass
    return found


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.marker = uuid.uuid4().hex
        self.gcs_port, self.dash_port = free_port(HEAD_IP), free_port()
        self.address = f"{HEAD_IP}:{self.gcs_port}"
        self.dashboard = f"http://127.0.0.1:{self.dash_port}"
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            "REFINERY_TEST_CLUSTER": self.marker,
            "PATH": f"{RAY.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "no_proxy": "*",
            "NO_PROXY": "*",
        }
        self.procs: list[subprocess.Popen] = []

    def _start_node(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "w")
        self.procs.append(
            subprocess.Popen(
                [str(RAY), "start", "--block", "--disable-usage-stats", "--num-cpus", "1",
                 "--temp-dir", str(self.root / name), "--dashboard-agent-listen-port", str(free_port()), *args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )
        log.close()
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in (self.root / f"{name}.log").read_text():
            if self.procs[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start ({name}) failed:\n{(self.root / f'{name}.log').read_text()[-3000:]}")
            time.sleep(0.1)

    def start(self) -> None:
        self._start_node("head", ["--head", "--node-ip-address", HEAD_IP, "--port", str(self.gcs_port),
                                  "--ray-client-server-port", str(free_port(HEAD_IP)),
                                  "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dash_port)])
        self._start_node("worker", ["--node-ip-address", WORKER_IP, "--address", self.address])
        deadline = time.monotonic() + 60
        while len(nodes := [n for n in self.state("nodes") if n["state"] == "ALIVE"]) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster has {len(nodes)} live nodes, not 2")
            time.sleep(0.2)
        self.nodes = {n["node_ip"]: n["node_id"] for n in nodes}

    def ray(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(RAY), *args], env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def state(self, what: str, *filters: str) -> list[dict]:
        """`ray list WHAT` as records, via the head's dashboard."""
        args = ["list", what, "--address", self.dashboard, "--format", "json", "--limit", "10000", "--detail"]
        for f in filters:
            args += ["--filter", f]
        proc = self.ray(*args)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    def stop(self) -> None:
        for p in reversed(self.procs):  # worker first, then head
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _ in range(100):  # workers and actors outlive their raylet for a moment (10 s at most)
            left = marked_pids(self.marker)
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for p in self.procs:
            if p.poll() is None:
                p.wait(10)


@pytest.fixture(scope="module")
def cluster():
    if not RAY.exists():
        pytest.skip(f"no `ray` command beside {sys.executable}")
    if find_spec("aiohttp") is None:
        pytest.skip("the job server needs ray[default] (aiohttp, ...) installed")
    # Ray's unix socket paths (<temp>/session_<date>_<pid>/sockets/plasma_store) must stay under
    # 107 characters, too long under pytest's tmp_path: a short folder in /tmp, removed after.
    root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    c = Cluster(root)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert not marked_pids(c.marker), "cluster processes left running"


def kept(out: Path) -> tuple[list[str], dict]:
    stats = json.loads((out / "stats.json").read_text())
    stats.pop("seconds", None)  # wall-clock times of the phases
    return sorted(pq.read_table(out / "shards", columns=["id"]).column("id").to_pylist()), stats


def job_tasks(cluster: Cluster, job_id: str) -> list[dict]:
    return [t for t in cluster.state("tasks", f"job_id={job_id}") if t["state"] == "FINISHED" and t["type"] == "NORMAL_TASK"]


def test_job_submit_uses_both_nodes_and_matches_a_local_run(cluster, data_dir, tmp_path):
    warc = str(data_dir / "crawl-sample" / "real-pages.warc.gz")
    job_out, local_out = tmp_path / "job", tmp_path / "local"
    submission = f"refinery-test-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(1) as pool:  # the single-node reference run overlaps the job
        local = pool.submit(run_cli, "run", "pipelines/cc.yaml", "--input", warc, "--output", str(local_out),
                            "--limit", LIMIT, env={"RAY_USAGE_STATS_ENABLED": "0"})
        proc = cluster.ray(
            "job", "submit", "--address", cluster.dashboard, "--submission-id", submission,
            "--working-dir", ".", "--runtime-env-json", json.dumps({"excludes": EXCLUDES}), "--",
            "refinery", "run", "pipelines/cc.yaml", "--input", warc, "--output", str(job_out), "--limit", LIMIT,
            timeout=480,
        )
        local = local.result()
    assert proc.returncode == 0 and "succeeded" in proc.stdout, (proc.stdout + proc.stderr)[-4000:]
    assert local.returncode == 0, local.stderr[-3000:]

    job = next(j for j in cluster.state("jobs") if j.get("submission_id") == submission)
    assert job["status"] == "SUCCEEDED"
    used = {t["node_id"] for t in job_tasks(cluster, job["job_id"])}
    assert used == set(cluster.nodes.values()), f"tasks ran on {used}, nodes are {cluster.nodes}"

    job_ids, job_stats = kept(job_out)
    local_ids, local_stats = kept(local_out)
    assert job_stats["records_read"] == int(LIMIT)
    assert job_ids == local_ids and len(job_ids) > 0
    assert job_stats == local_stats


def test_ray_address_joins_the_cluster(cluster, data_dir, tmp_path):
    cfg = yaml.safe_load((REPO / "pipelines" / "cc.yaml").read_text())
    cfg.pop("dedup", None)  # the filter phase is enough to see where the driver runs
    (tmp_path / "filter.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    proc = run_cli("run", str(tmp_path / "filter.yaml"), "--input", str(data_dir / "crawl-sample" / "real-pages.warc.gz"),
                   "--output", str(out), "--limit", "50", env=cluster.env | {"RAY_ADDRESS": cluster.address})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "stats.json").read_text())["records_read"] == 50
    drivers = [j for j in cluster.state("jobs") if j["type"] == "DRIVER" and str(out) in (j.get("entrypoint") or "")]
    assert len(drivers) == 1 and drivers[0]["status"] == "SUCCEEDED"
    used = {t["node_id"] for t in job_tasks(cluster, drivers[0]["job_id"])}
    assert used and used <= set(cluster.nodes.values())
