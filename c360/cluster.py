"""A Spark standalone cluster on this machine, for running c360 on JVM Spark with Delta Lake.

    c360 cluster up [--dir .cluster]      # master, two workers, a Spark Connect server
    c360 cluster status [--dir .cluster]
    c360 cluster down [--dir .cluster]

Everything comes from the pyspark wheel in the project's venv: its ``bin/spark-class`` runs
the master (``org.apache.spark.deploy.master.Master``) and each worker
(``org.apache.spark.deploy.worker.Worker``) as separate JVM processes, and its
``bin/spark-submit`` the Spark Connect server
(``org.apache.spark.sql.connect.service.SparkConnectServer``) as the cluster's one
application, its driver. Delta Lake's jars come from Maven Central (``--packages``) into a
stable Ivy cache (``~/.ivy2`` unless ``C360_CLUSTER_IVY`` says otherwise), so only the first
start downloads them.

Each process gets its own free loopback ports and its own process group; ``up`` waits until
each listens (and the workers have registered with the master) and writes
``<dir>/cluster.json`` (URLs, ports, pids); logs go to ``<dir>/logs/``. ``down`` kills each
process group it recorded. :func:`up` returns a :class:`Cluster` whose ``stop()`` does the
same, registered with ``atexit`` too, so a caller that dies still stops what it started.

The workers run the project's Python code (the landing reader's ``mapInArrow``, pandas
UDFs, compiled models) with the project's venv: ``PYSPARK_PYTHON`` is the venv's Python and
the repository is on the executors' ``PYTHONPATH``.

Sized for a shared two-core machine: two workers of one core and 1.5 GB each (executors of
1 GB heap: their Python workers live outside it), a 3 GB driver, 512 MB per daemon.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / ".cluster"

# Delta Lake on the JVM. delta-spark 4.4.1's configure_spark_with_delta_pip asks for
# io.delta:delta-spark_<spark major.minor>_2.13:<its own version>, i.e.
# io.delta:delta-spark_4.2_2.13:4.4.1; Maven Central has delta-spark_4.2_2.13 only up to
# 4.4.0 (no 4.4.1 jars were published there), so the cluster uses 4.4.0 of the same
# artifact: the Delta release built for Spark 4.2. The Python package (delta-spark 4.4.1)
# is only this pin's source; c360 uses no Delta Python API on the cluster.
DELTA_PACKAGE = os.environ.get("C360_DELTA_PACKAGE") or "io.delta:delta-spark_4.2_2.13:4.4.0"
# S3 (and S3-compatible stores) for the JVM: Hadoop's S3A connector, the hadoop-aws release of
# the Hadoop client inside the pyspark wheel (hadoop-client-api 3.5.0), which brings the AWS
# SDK v2 bundle (about 650 MB, downloaded once into the Ivy cache).
HADOOP_AWS_PACKAGE = os.environ.get("C360_HADOOP_AWS_PACKAGE") or "org.apache.hadoop:hadoop-aws:3.5.0"
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

WORKERS = 2
WORKER_CORES = 1
WORKER_MEMORY = "1536m"
EXECUTOR_MEMORY = "1g"
DRIVER_MEMORY = "3g"  # room for a whole pipeline's broadcasts (with the lake on S3 even 3g ran out in score)
DAEMON_MEMORY = "512m"
HOST = "127.0.0.1"
JAVA_OPTIONS = os.environ.get("C360_CLUSTER_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
_children: list[subprocess.Popen] = []
START_TIMEOUT = float(os.environ.get("C360_CLUSTER_START_TIMEOUT", "600"))  # first start downloads Delta


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def ivy_dir() -> Path:
    return Path(os.environ.get("C360_CLUSTER_IVY") or Path.home() / ".ivy2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def connect_conf(master_url: str, ui_port: int, connect_port: int, local_dir: Path) -> dict[str, str]:
    """The Spark Connect server's configuration (every ``--conf`` of its command line)."""
    python = sys.executable
    return {
        **DELTA_CONF,
        "spark.master": master_url,
        "spark.app.name": "c360 Spark Connect",
        "spark.connect.grpc.binding.address": HOST,
        "spark.connect.grpc.binding.port": str(connect_port),
        "spark.driver.host": HOST,
        "spark.driver.bindAddress": HOST,
        "spark.driver.memory": DRIVER_MEMORY,
        "spark.executor.memory": EXECUTOR_MEMORY,
        "spark.executor.cores": str(WORKER_CORES),
        "spark.cores.max": str(WORKERS * WORKER_CORES),
        "spark.ui.port": str(ui_port),
        "spark.ui.showConsoleProgress": "false",
        "spark.local.dir": str(local_dir),
        "spark.jars.ivy": str(ivy_dir()),
        # the project's Python on the driver and in every executor's Python workers
        "spark.pyspark.python": python,
        "spark.pyspark.driver.python": python,
        "spark.executorEnv.PYSPARK_PYTHON": python,
        "spark.executorEnv.PYTHONPATH": str(ROOT),
        # Delta rebuilds a table's state from its log in this many shuffle partitions (default
        # 50: 50 tasks per table read, most of a small job's time on two cores)
        "spark.databricks.delta.snapshotPartitions": "2",
        # A small shared machine: one GC thread, and the quick compiler only (Spark compiles
        # code for every query stage; on two busy cores C2's compilations took most of the
        # CPU of a small job's executors)
        "spark.driver.extraJavaOptions": JAVA_OPTIONS,
        "spark.executor.extraJavaOptions": JAVA_OPTIONS,
        # a whole pipeline creates thousands of broadcasts in this one long-lived driver; the
        # cleaner frees those no query holds only after a GC, so ask for one every few minutes
        "spark.cleaner.periodicGC.interval": "3min",
        # keep the finished stages' task counts for the REST API (tests read them)
        "spark.ui.retainedJobs": "10000",
        "spark.ui.retainedStages": "10000",
        # the compiled models' cache of the caller (the driver compiles, executors load)
        **({"spark.executorEnv.C360_MODEL_CACHE": os.environ["C360_MODEL_CACHE"]}
           if os.environ.get("C360_MODEL_CACHE") else {}),
    }


def s3a_conf(endpoint: str | None = None, region: str | None = None, path_style: bool = True) -> dict[str, str]:
    """The Connect server's configuration for a lake or landing zone on S3 (or an
    S3-compatible store at ``endpoint``), read and written by the JVM through S3A.

    ``s3://`` paths (what c360's settings and the Python side use) are mapped to the S3A
    file system, so the same URI names the same objects for Spark, ``deltalake`` and
    pyarrow. Credentials are never put on the command line or in the configuration: the
    JVM reads them from the environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
    optional ``AWS_SESSION_TOKEN``), as the Python side does; the executors inherit the
    workers' environment."""
    conf = {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.aws.credentials.provider":
            "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider",
        "spark.hadoop.fs.s3a.path.style.access": "true" if path_style else "false",
    }
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = "true" if endpoint.startswith("https:") else "false"
    if region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    return conf


@dataclass
class Cluster:
    dir: str
    master_url: str = ""
    master_ui: str = ""
    connect_url: str = ""
    connect_ui: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return Path(self.dir) / "cluster.json"

    def save(self) -> None:
        self.state_file.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path | str = DEFAULT_DIR) -> Cluster | None:
        f = Path(directory) / "cluster.json"
        return cls(**json.loads(f.read_text(encoding="utf-8"))) if f.is_file() else None

    def master_json(self) -> dict:
        """The master's status page as JSON: workers, running and completed applications."""
        with urllib.request.urlopen(f"{self.master_ui}/json/", timeout=60) as r:
            return json.loads(r.read())

    def api(self, path: str) -> object:
        """The Connect server's monitoring REST API (``/api/v1/...``)."""
        with urllib.request.urlopen(f"{self.connect_ui}/api/v1/{path.lstrip('/')}", timeout=60) as r:
            return json.loads(r.read())

    def executors(self) -> list[dict]:
        """The Connect application's executors (driver excluded), from the REST API."""
        apps = self.api("applications")
        return [e for e in self.api(f"applications/{apps[0]['id']}/allexecutors") if e["id"] != "driver"]

    def alive(self) -> dict[str, bool]:
        return {name: _alive(pid) for name, pid in self.pids.items()}

    def stop(self) -> None:
        """Kill every process group this cluster started (Connect server first), and wait."""
        for name in sorted(self.pids, key=lambda n: (n != "connect", n.startswith("master"), n)):
            _kill_group(self.pids[name])
        self.pids = {}
        if Path(self.dir).is_dir():
            self.state_file.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def _kill_group(pid: int, grace: float = 15) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 5)
        while time.monotonic() < deadline:
            try:  # reap it when it is our child
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                pass
            if not _alive(pid):
                break
            time.sleep(0.2)
        else:
            continue
        # the leader is gone; kill what else is left of its group
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return


def _wait(what: str, pid: int, log: Path, ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited before it was ready (log {log}):\n{tail}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} was not ready within {timeout:.0f} s (log {log})")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) == 0


def _env(directory: Path) -> dict[str, str]:
    home = spark_home()
    env = {k: v for k, v in os.environ.items()
           if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "PYSPARK_SUBMIT_ARGS", "SPARK_LOCAL_REMOTE")}
    venv_bin = str(Path(sys.executable).parent)
    env.update({
        "SPARK_HOME": str(home),
        "SPARK_CONF_DIR": str(directory / "conf"),  # empty: no stray spark-defaults
        "SPARK_LOCAL_IP": HOST,
        "SPARK_LOCAL_DIRS": str(directory / "tmp"),
        "SPARK_WORKER_DIR": str(directory / "work"),
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        # the master and workers only schedule: the quick compiler and one GC thread suffice
        "SPARK_DAEMON_JAVA_OPTS": JAVA_OPTIONS,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "PATH": os.pathsep.join([venv_bin, env.get("PATH", "")]),
    })
    return env


def up(directory: Path | str = DEFAULT_DIR, *, workers: int = WORKERS, register_atexit: bool = True,
       say=print, packages: tuple[str, ...] = (), conf: dict[str, str] | None = None) -> Cluster:
    """Start a master, ``workers`` workers and a Spark Connect server; return when all are ready.

    ``packages`` (Maven coordinates) and ``conf`` are added to the Connect server's: e.g.
    ``packages=(HADOOP_AWS_PACKAGE,), conf=s3a_conf(endpoint)`` for a lake on S3.

    Fails when ``directory`` already records a running cluster. On any failure, whatever was
    started is stopped before the error is raised."""
    directory = Path(directory).resolve()
    old = Cluster.load(directory)
    if old and any(old.alive().values()):
        raise RuntimeError(f"a cluster is already running from {directory} (c360 cluster down first): "
                           f"{old.connect_url}")
    for sub in ("logs", "conf", "tmp", "work"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    env = _env(directory)
    home = spark_home()
    cluster = Cluster(dir=str(directory))
    if register_atexit:
        atexit.register(cluster.stop)

    def start(name: str, cmd: list[str]) -> int:
        log = directory / "logs" / f"{name}.log"
        with open(log, "w", encoding="utf-8") as out:
            # its own session and process group: killed as a whole, untouched by the caller's ^C
            p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=directory, start_new_session=True)
        _children.append(p)  # kept: a Popen dropped while its process runs warns
        cluster.pids[name] = p.pid
        cluster.commands[name] = cmd
        cluster.save()
        return p.pid

    try:
        port, ui = free_port(), free_port()
        cluster.master_url, cluster.master_ui = f"spark://{HOST}:{port}", f"http://{HOST}:{ui}"
        pid = start("master", [str(home / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master",
                               "--host", HOST, "--port", str(port), "--webui-port", str(ui)])
        _wait("the master", pid, directory / "logs" / "master.log", lambda: _listening(port) and _listening(ui),
              START_TIMEOUT)
        say(f"master   {cluster.master_url}  (UI {cluster.master_ui})")
        for i in range(1, workers + 1):
            wport, wui = free_port(), free_port()
            start(f"worker{i}", [str(home / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker",
                                 "--host", HOST, "--port", str(wport), "--webui-port", str(wui),
                                 "--cores", str(WORKER_CORES), "--memory", WORKER_MEMORY,
                                 "--work-dir", str(directory / "work" / f"worker{i}"), cluster.master_url])

        def registered() -> bool:
            return sum(w.get("state") == "ALIVE" for w in cluster.master_json().get("workers", [])) >= workers

        _wait(f"{workers} workers registering", cluster.pids["worker1"], directory / "logs" / "worker1.log",
              registered, START_TIMEOUT)
        say(f"workers  {workers} x {WORKER_CORES} core, {WORKER_MEMORY}")
        cport, cui = free_port(), free_port()
        server_conf = {**connect_conf(cluster.master_url, cui, cport, directory / "tmp"), **(conf or {})}
        cmd = [str(home / "bin" / "spark-submit"), "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
               "--name", "c360 Spark Connect", "--packages", ",".join([DELTA_PACKAGE, *packages]),
               "--driver-memory", DRIVER_MEMORY]
        for k, v in server_conf.items():
            cmd += ["--conf", f"{k}={v}"]
        pid = start("connect", cmd)
        cluster.connect_url, cluster.connect_ui = f"sc://{HOST}:{cport}", f"http://{HOST}:{cui}"
        _wait("the Spark Connect server", pid, directory / "logs" / "connect.log", lambda: _listening(cport),
              START_TIMEOUT)
        cluster.save()
        say(f"connect  {cluster.connect_url}  (UI {cluster.connect_ui}; SPARK_REMOTE={cluster.connect_url})")
        return cluster
    except BaseException:
        cluster.stop()
        raise


def down(directory: Path | str = DEFAULT_DIR, say=print) -> bool:
    """Stop the cluster recorded in ``directory``; False when none was recorded."""
    cluster = Cluster.load(Path(directory).resolve())
    if cluster is None:
        say(f"no cluster recorded in {directory}")
        return False
    cluster.stop()
    say(f"stopped the cluster of {directory}")
    return True


def status(directory: Path | str = DEFAULT_DIR) -> dict:
    """What ``directory`` records: URLs, and per process whether it is alive."""
    cluster = Cluster.load(Path(directory).resolve())
    if cluster is None:
        return {"running": False}
    alive = cluster.alive()
    out = {"running": all(alive.values()) and bool(alive), "processes": alive, "master_url": cluster.master_url,
           "master_ui": cluster.master_ui, "connect_url": cluster.connect_url, "connect_ui": cluster.connect_ui}
    try:
        out["workers_alive"] = sum(w.get("state") == "ALIVE" for w in cluster.master_json().get("workers", []))
    except OSError:
        out["workers_alive"] = None
    return out
