"""A one-node Slurm cluster on localhost for the tests: munged, slurmctld and slurmd in a tmp folder.

Debian's ``slurm-wlm`` and ``munge`` packages provide the programs (``.ci/run`` installs them).
Everything the daemons write (key, sockets, state, spool, logs, pid files) stays in one folder,
they listen on free ports of 127.0.0.1, and client commands find them through ``SLURM_CONF``. No
cgroups: processes are tracked with ``proctrack/linuxproc`` and ``task/none``.

The node declares at least 16 CPUs, 64 GB and 2 GPUs (``SlurmdParameters=config_overrides``
lets slurmd accept more than the machine has), so that ``sbatch --test-only`` can judge the
site presets' real requests (8 CPUs, 32 GB, a GPU) on a small CI machine; the jobs the tests
actually run ask for 1 CPU. The GPUs are two character devices (``/dev/null``, ``/dev/zero``)
standing in for ``/dev/nvidia*``: enough for Slurm to count and hand out, never opened.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
MIN_CPUS, MIN_MEMORY_MB, GPUS = 16, 65536, 2
PARTITIONS = ("debug", "gpu")  # debug: the default; gpu: the Koa-like preset's


class ClusterUnavailable(RuntimeError):
    """The cluster cannot run here; the message says why (for a test skip)."""


def missing_programs() -> list[str]:
    """The Slurm and MUNGE programs that are not installed."""
    return [name for name in PROGRAMS if shutil.which(name) is None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _machine() -> tuple[int, int]:
    """CPUs and memory (MB) of this machine, as slurmd measures them."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
    fields = dict(part.split("=", 1) for part in out.split() if "=" in part)
    return int(fields.get("CPUs", os.cpu_count() or 1)), int(fields.get("RealMemory", 1024))


def _tail(path: Path, lines: int = 8) -> str:
    if not path.is_file():
        return f"({path.name} was not written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class LocalCluster:
    """A running one-node cluster.

    Attributes:
        root: The folder holding everything the daemons write.
        conf: Its ``slurm.conf``: set ``SLURM_CONF`` to it for sbatch, squeue and the rest.
        node: The node's name (this machine's short host name).
        processes: The daemons, in start order.
        remove_root: Delete ``root`` when the cluster stops (it was made for the cluster).
    """

    root: Path
    conf: Path
    node: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    remove_root: bool = False

    @property
    def env(self) -> dict[str, str]:
        """This process's environment with ``SLURM_CONF`` pointing at the cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def client(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Runs a Slurm client command against this cluster."""
        return subprocess.run(
            list(args), capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )

    def logs(self) -> str:
        """The last lines of every daemon's log and console output (for failure messages)."""
        files = sorted((self.root / "log").glob("*"))
        return "\n".join(f"== {f.name}\n{_tail(f)}" for f in files) or "(no logs)"

    def stop(self) -> None:
        """Cancels every job, then stops slurmd, slurmctld and munged (newest first)."""
        if shutil.which("scancel"):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.client("scancel", "--quiet", "--user", getpass.getuser(), timeout=10)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes.clear()
        if self.remove_root:
            shutil.rmtree(self.root, ignore_errors=True)


def _wait(what: str, check, timeout: float, cluster: LocalCluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [p for p in cluster.processes if p.poll() is not None]
        if dead:
            raise ClusterUnavailable(
                f"{Path(dead[0].args[0]).name} exited with {dead[0].returncode} while waiting "
                f"for {what}:\n{cluster.logs()}"
            )
        if check():
            return
        time.sleep(0.3)
    raise ClusterUnavailable(
        f"timed out after {timeout:.0f} s waiting for {what}:\n{cluster.logs()}"
    )


def _slurm_conf(root: Path, node: str, cpus: int, memory: int) -> str:
    socket_path = root / "munge" / "munge.socket"
    ports = (_free_port(), _free_port())
    return f"""# A one-node test cluster (tests/slurm_cluster.py); everything lives in {root}.
ClusterName=tcvtest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket_path}
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "log" / "slurmctld.log"}
SlurmdLogFile={root / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
KillWait=5
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} Gres=gpu:{GPUS} State=UNKNOWN
PartitionName={PARTITIONS[0]} Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName={PARTITIONS[1]} Nodes={node} MaxTime=INFINITE State=UP
"""


def start_cluster(root: Path | None = None, *, timeout: float = 45.0) -> LocalCluster:
    """Starts munged, slurmctld and slurmd with everything under ``root``.

    Args:
        root: An empty folder whose parents every user may search (munged checks the path of
            its socket); None: a new folder in the system's temporary folder, deleted on stop.
            pytest's own tmp folders are private (0700), so munged refuses them.
        timeout: Seconds each daemon may take to come up.

    Raises:
        ClusterUnavailable: If a program is missing, this is not root (slurmd starts jobs as the
            submitting user, which needs root), or a daemon does not come up.
    """
    missing = missing_programs()
    if missing:
        raise ClusterUnavailable(
            f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge)"
        )
    if os.geteuid() != 0:
        raise ClusterUnavailable(
            "slurmd must run as root to start jobs; these tests run as root in CI"
        )
    made_root = root is None
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="tcv-slurm-"))
        root.chmod(0o755)
    node = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    cluster = LocalCluster(root=root, conf=conf, node=node, remove_root=made_root)
    munge = root / "munge"
    key = munge / "munge.key"

    def spawn(name: str, *args: str) -> None:
        with (root / "log" / f"{name}.stdout").open("w") as log:
            cluster.processes.append(
                subprocess.Popen(
                    [shutil.which(name) or name, *args],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=cluster.env,
                    start_new_session=True,
                )
            )

    def node_idle() -> bool:
        done = cluster.client("sinfo", "-h", "-N", "-o", "%T")
        return done.returncode == 0 and done.stdout.strip().startswith("idle")

    try:
        for sub in ("munge", "state", "spool", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        munge.chmod(0o755)  # munged wants the socket's folder searchable by all
        cpus, memory = _machine()
        conf.write_text(_slurm_conf(root, node, max(cpus, MIN_CPUS), max(memory, MIN_MEMORY_MB)))
        (root / "gres.conf").write_text(
            f"NodeName={node} Name=gpu File=/dev/null\nNodeName={node} Name=gpu File=/dev/zero\n"
        )
        made = subprocess.run(
            ["mungekey", "--create", "--keyfile", str(key), "--bits", "1024"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if made.returncode != 0:
            raise ClusterUnavailable(f"mungekey failed: {made.stderr.strip()}")
        key.chmod(0o600)
        spawn(
            "munged", "--foreground", f"--socket={munge / 'munge.socket'}", f"--key-file={key}",
            f"--pid-file={munge / 'munged.pid'}", f"--log-file={root / 'log' / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        )  # fmt: skip
        _wait("munged's socket", (munge / "munge.socket").exists, timeout, cluster)
        spawn("slurmctld", "-D", "-i", "-f", str(conf))
        ping = lambda: cluster.client("scontrol", "ping").returncode == 0  # noqa: E731
        _wait("slurmctld", ping, timeout, cluster)
        spawn("slurmd", "-D", "-f", str(conf), "-N", node)
        _wait("the node to be idle", node_idle, timeout, cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster
