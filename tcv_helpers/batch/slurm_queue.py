"""Talking to Slurm: submit a script, ask whether it would run, read the queue, wait.

Every call goes through Slurm's own commands (``sbatch``, ``squeue``) with a time limit, so a
controller that does not answer gives an error that says so instead of a hang.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence

from tcv_helpers.batch.slurm_site import SlurmError

SUBMIT_TIMEOUT = 60
ACTIVE_STATES = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED")


def _slurm_command(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise SlurmError(
            f"{name} not found: run this on the cluster's login node (where Slurm's commands "
            "are), or write the script without --submit and copy it there."
        )
    return found


def _run(args: list[str], *, timeout: float = SUBMIT_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SlurmError(
            f"{' '.join(args[:2])} did not answer in {timeout:.0f} s: is the Slurm controller up?"
        ) from exc


def submit(script: str | os.PathLike, *, array: str | None = None) -> str:
    """Submits a job script with ``sbatch --parsable`` and returns the job id.

    Args:
        script: The job script.
        array: ``--array`` for this submission, overriding the script's (``"1,3"``: only those
            tasks of a sweep).

    Raises:
        SlurmError: If sbatch is missing or refuses the job (with its message).
    """
    args = [_slurm_command("sbatch"), "--parsable"]
    if array:
        args.append(f"--array={array}")
    done = _run([*args, str(script)])
    if done.returncode != 0:
        raise SlurmError(f"sbatch refused {script}: {done.stderr.strip() or done.stdout.strip()}")
    job_id = done.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch answered {done.stdout.strip()!r}, not a job id.")
    return job_id


def sbatch_test_only(script: str | os.PathLike) -> str:
    """Asks Slurm whether it would accept a script (``sbatch --test-only``), without submitting.

    Returns:
        Slurm's answer (``Job ... to start at ... on nodes ...``).

    Raises:
        SlurmError: With Slurm's reason when it would refuse the job (unknown partition, more
            CPUs or memory than any node has, ...).
    """
    done = _run([_slurm_command("sbatch"), "--test-only", str(script)])
    answer = (done.stderr.strip() + "\n" + done.stdout.strip()).strip()
    if done.returncode != 0:
        raise SlurmError(f"Slurm would refuse {script}: {answer}")
    return answer


def queued_tasks(ids: Sequence[str]) -> dict[int, str] | None:
    """The array tasks of these jobs that are still in the queue: index -> Slurm state.

    Returns:
        ``{1: "PENDING", 3: "RUNNING"}``; an empty dict when none is queued; None when the queue
        cannot be asked (no ``squeue`` here, or the controller does not answer).
    """
    if not ids:
        return {}
    squeue = shutil.which("squeue")
    if not squeue:
        return None
    try:
        done = _run([squeue, "-h", "-r", "-j", ",".join(ids), "-o", "%F|%K|%T"], timeout=30)
    except SlurmError:
        return None
    if done.returncode != 0:
        return {} if "Invalid job id" in done.stderr else None
    tasks: dict[int, str] = {}
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[1].isdigit():
            tasks[int(parts[1])] = parts[2]
    return tasks


def active_jobs(ids: Sequence[str]) -> list[str]:
    """The jobs (or array tasks, as ``123_4``) among ``ids`` that are still queued or running.

    Raises:
        SlurmError: If squeue is missing or the controller does not answer.
    """
    if not ids:
        return []
    done = _run(
        [_slurm_command("squeue"), "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T"], timeout=30
    )
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return []
        raise SlurmError(f"squeue failed: {done.stderr.strip()}")
    return [
        line.split("|")[0] for line in done.stdout.split() if line.split("|")[-1] in ACTIVE_STATES
    ]


def wait_for_jobs(ids: Sequence[str], *, timeout: float = 3600.0, poll: float = 2.0) -> None:
    """Waits until none of these jobs is queued or running.

    Raises:
        TimeoutError: If some are still there after ``timeout`` seconds (naming them).
        SlurmError: If the queue cannot be asked.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = active_jobs(ids)
        if not left:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Still queued or running after {timeout:.0f} s: {', '.join(left)}.")
        time.sleep(poll)
