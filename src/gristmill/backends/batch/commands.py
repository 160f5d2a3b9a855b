"""What the batch-scheduler backends share: calling scheduler commands, and noticing lost jobs.

Every scheduler command runs with a timeout (``command_timeout``, 60 s by default):
a controller that does not answer never blocks the engine for longer. A command
that fails or hangs is retried with backoff and then reported as a
:class:`BackendError`; the engine logs it and polls again later. It is never taken
for a job failure. A status query is asked once (``attempts=1``): the engine's next
poll is its retry, so a controller that does not answer costs one query per poll
interval, never three. A submission that timed out is never run again
(:class:`CommandTimeoutError`): the scheduler may have accepted it. Each call is counted
per command, so a benchmark can show how many ``sbatch``/``squeue``/``sacct`` calls a
run made.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence

import attrs
from loguru import logger

from gristmill.errors import BackendError


class CommandTimeoutError(BackendError):
    """A command that must not run twice (a submission) timed out: it may have taken effect."""


@attrs.define
class CommandRunner:
    """Runs scheduler commands with a timeout, retries and backoff."""

    timeout: float = 60.0
    attempts: int = 3
    backoff: float = 1.0
    calls: Counter[str] = attrs.field(factory=Counter)
    sleep: Callable[[float], None] = time.sleep

    def run(
        self,
        argv: Sequence[str],
        *,
        ok: Callable[[subprocess.CompletedProcess[str]], bool] | None = None,
        input_text: str | None = None,
        retry_timeouts: bool = True,
        attempts: int | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv``; ``ok`` decides whether a result is final (default: exit 0).

        ``retry_timeouts=False`` is for commands that must not run twice (``sbatch``:
        a client that timed out may still have submitted the job); their timeout raises
        :class:`CommandTimeoutError`. ``attempts`` overrides how often a failure is tried
        (1 for a status query, which the engine asks again at its next poll).
        """
        accept = ok or (lambda proc: proc.returncode == 0)
        tries = self.attempts if attempts is None else max(1, attempts)
        delay = self.backoff
        problem = ""
        for attempt in range(1, tries + 1):
            self.calls[argv[0]] += 1
            try:
                proc = subprocess.run(
                    list(argv), capture_output=True, text=True, timeout=self.timeout,
                    input=input_text, check=False,
                )
            except subprocess.TimeoutExpired:
                problem = f"timed out after {self.timeout:g} s"
                if not retry_timeouts:
                    raise CommandTimeoutError(
                        f"{' '.join(argv[:2])} timed out after {self.timeout:g} s and is not "
                        "retried: it may have taken effect; check the scheduler's queue"
                    ) from None
            except OSError as exc:
                raise BackendError(
                    f"cannot run {argv[0]}: {exc.strerror}; is the scheduler's client "
                    "installed and on PATH?"
                ) from None
            else:
                if accept(proc):
                    return proc
                problem = f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:500]}"
            if attempt < tries:
                logger.warning("{} failed ({}); retrying in {:g} s", argv[0], problem, delay)
                self.sleep(delay)
                delay *= 2
        times = f"{tries} times" if tries > 1 else "once, not retried"
        raise BackendError(f"{' '.join(argv[:2])} failed {times}: {problem}", transient=True)


@attrs.define
class Vanished:
    """Jobs no status source knows about; LOST once that has lasted ``grace`` seconds.

    Accounting lags the queue (sacct may not list a job for a few seconds after
    it left squeue), so absence alone is not a verdict.
    """

    grace: float = 120.0
    since: dict[str, float] = attrs.field(factory=dict)
    clock: Callable[[], float] = time.monotonic

    def seen(self, job_id: str) -> None:
        self.since.pop(job_id, None)

    def missing(self, job_id: str) -> bool:
        """Record an absence; True when the job should now count as LOST."""
        now = self.clock()
        first = self.since.setdefault(job_id, now)
        return now - first >= self.grace
