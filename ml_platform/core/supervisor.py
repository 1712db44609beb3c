"""Keeps the platform's long-running processes up: restarts one that dies, with back-off, and stops them together.

``run_platform`` supervises the web server and the worker with it. A process
that exits (a crash, ``kill -9``, the out-of-memory killer) is logged with why
and started again after a delay that doubles with each quick death (1 s, 2 s,
4 s … 30 s) so a process that cannot start does not spin; once it has stayed
up for ``stable_after`` seconds the delay starts from the beginning again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


def describe_exit(returncode: int) -> str:
    """ "exited with code 1", "was killed by signal 9 (SIGKILL)"."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = "unknown"
    return f"was killed by signal {-returncode} ({name})"


@dataclass
class Program:
    """One supervised process: what to run, and its restart state."""

    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    delay: float = 0.0  # the back-off before the next restart
    restart_at: float | None = None  # when it is due to start again, while it is down


class Supervisor:
    def __init__(
        self,
        programs: list[Program],
        *,
        first_delay: float = 1.0,
        max_delay: float = 30.0,
        stable_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        popen: Callable[..., subprocess.Popen] = subprocess.Popen,
    ) -> None:
        self.programs = {program.name: program for program in programs}
        self.first_delay, self.max_delay, self.stable_after = first_delay, max_delay, stable_after
        self.clock, self.popen = clock, popen

    def __getitem__(self, name: str) -> Program:
        return self.programs[name]

    def start_all(self) -> None:
        for program in self.programs.values():
            self._start(program)

    def _start(self, program: Program) -> None:
        program.process = self.popen(program.command)
        program.started_at, program.restart_at = self.clock(), None
        logger.info("started the %s process (pid %s)", program.name, program.process.pid)

    def check(self) -> None:
        """Notice processes that died and restart those whose back-off has passed; call it every half second."""
        now = self.clock()
        for program in self.programs.values():
            if program.restart_at is None:
                code = program.process.poll() if program.process else None
                if code is None:
                    continue
                if now - program.started_at >= self.stable_after:
                    program.delay = 0.0  # it had been fine for a while: this is a new problem, not a loop
                program.delay = min(self.max_delay, program.delay * 2 or self.first_delay)
                program.restart_at = now + program.delay
                logger.error(
                    "the %s process (pid %s) %s after %.0f s; restarting it in %.0f s",
                    program.name,
                    program.process.pid,
                    describe_exit(code),
                    now - program.started_at,
                    program.delay,
                )
            elif now >= program.restart_at:
                program.restarts += 1
                self._start(program)

    def stop_all(self, timeout: float = 20.0) -> None:
        """SIGTERM to every process (each finishes or requeues its work); SIGKILL to any up after ``timeout``;
        then what they started in this session (gunicorn's workers, a deploy's child) once they are gone too:
        nothing the platform started outlives it, but what was started in a session of its own on purpose
        (a pipeline to resume, the serving process, which :func:`run_platform` stops itself)."""
        running = [p.process for p in self.programs.values() if p.process and p.process.poll() is None]
        family = _same_session_descendants(running)
        for process in running:
            process.terminate()
        deadline = self.clock() + timeout
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                logger.warning("pid %s ignored SIGTERM for %.0f s; killing it", process.pid, timeout)
                process.kill()
                process.wait()
        for program in self.programs.values():
            program.restart_at = None
        _reap(family, timeout=5.0)


def _same_session_descendants(processes: list) -> list:
    """The live descendants of ``processes`` (real ones) that share this process's session."""
    import psutil

    session, found = os.getsid(0), []
    for process in processes:
        if not isinstance(process, subprocess.Popen):
            continue  # a test's stand-in: its pid is nobody's
        try:
            descendants = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            continue
        for child in descendants:
            with contextlib.suppress(psutil.Error, OSError):
                if os.getsid(child.pid) == session:
                    found.append(child)
    return found


def _reap(family: list, timeout: float) -> None:
    import psutil

    _, alive = psutil.wait_procs(family, timeout=timeout)
    for child in alive:
        logger.warning("pid %s outlived its parent; killing it", child.pid)
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=timeout)
