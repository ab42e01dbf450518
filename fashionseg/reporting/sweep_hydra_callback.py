"""The Hydra callback that writes the sweep report while a multirun runs.

:class:`SweepReportCallback` (registered in ``conf/hydra/default.yaml``) writes the
report at the end of every multirun, times each job into ``<job>/job.json`` and
refreshes the report after every job. Hydra's basic sweeper raises the first failed
job's exception once all jobs of the batch have run, and then skips
``on_multirun_end``; a job that exits the process (``SystemExit``) ends the sweep
there. The callback therefore also writes the report from an exit handler, so both
cases still leave a report with the failed rows. Only a killed process (SIGKILL, out of
memory) leaves none: run ``python -m fashionseg.sweep_report SWEEP_DIR`` by hand then.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fashionseg.files import write_json
from fashionseg.reporting.sweep import REPORT_NAME, write_sweep_report
from fashionseg.reporting.sweep_jobs import FAILED, JOB_FILE, OK, last_logged_error

log = logging.getLogger(__name__)


def _is_multirun(config: DictConfig) -> bool:
    mode = OmegaConf.select(config, "hydra.mode")
    return str(getattr(mode, "name", mode)).endswith("MULTIRUN")


def _sweep_dir_of_job(config: DictConfig) -> Path:
    """The sweep directory: the job's output directory less ``hydra.sweep.subdir``."""
    job_dir = Path(str(config.hydra.runtime.output_dir))
    depth = len(Path(str(config.hydra.sweep.subdir)).parts)
    return job_dir.parents[depth - 1] if depth else job_dir


class SweepReportCallback(Callback):
    """Write the sweep report at the end of a multirun (and after each of its jobs).

    Also records each job's start, end, wall time, status and error in
    ``<job>/job.json``. Never raises: a report that cannot be written is logged.

    Args:
        every_job: refresh the report after every job (progress of a long sweep, and a
            report even when a failed job stops the sweep).
        out_dir: where to write the report; the sweep directory by default.
    """

    def __init__(self, every_job: bool = True, out_dir: str | None = None) -> None:
        self.every_job = every_job
        self.out_dir = Path(out_dir) if out_dir else None
        self._sweep_dir: Path | None = None  # set while this process runs a multirun
        self._job: tuple[Path, dict[str, Any]] | None = None  # the job in progress
        self._exit_hook = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(self._start_multirun, config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = self._sweep_dir or Path(str(config.hydra.sweep.dir))
        self._sweep_dir = None
        self._guard(self._report, sweep_dir, True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _is_multirun(config):
            self._guard(self._start_job, config)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        self._guard(self._end_job, job_return)
        if self.every_job:
            self._guard(self._report, _sweep_dir_of_job(config), False)

    # -- the work, each step guarded by _guard
    def _start_multirun(self, config: DictConfig) -> None:
        self._sweep_dir = Path(str(config.hydra.sweep.dir))
        self._register_exit_hook()

    def _start_job(self, config: DictConfig) -> None:
        job_dir = Path(str(config.hydra.runtime.output_dir))
        record = {
            "job": int(config.hydra.job.num),
            "status": "running",
            "overrides": [str(o) for o in config.hydra.overrides.task],
            "start": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        write_json(job_dir / JOB_FILE, record)
        self._job = (job_dir, record)
        self._register_exit_hook()

    def _end_job(self, job_return: Any, error: str | None = None) -> None:
        if self._job is None:
            return
        job_dir, record = self._job
        self._job = None
        if error is None:
            status = getattr(getattr(job_return, "status", None), "name", "COMPLETED")
            if status == "FAILED":
                value = getattr(job_return, "_return_value", None)
                error = f"{type(value).__name__}: {value}" if value is not None else "failed"
        end = time.time()
        record.update(
            status=FAILED if error else OK,
            error=error,
            end=end,
            wall_s=round(end - record["start"], 1),
        )
        write_json(job_dir / JOB_FILE, record)

    def _abandon_job(self) -> None:
        """Record the job in progress as failed, with the last error its log names."""
        assert self._job is not None
        error = last_logged_error(self._job[0]) or "see the job's log"
        self._end_job(None, f"the process exited during this job: {error}")

    def _report(self, sweep_dir: Path, finished: bool) -> None:
        rows = write_sweep_report(sweep_dir, self.out_dir, finished=finished)
        where = self.out_dir or sweep_dir
        failed = sum(r["status"] == FAILED for r in rows)
        log.info("sweep report (%d jobs, %d failed): %s", len(rows), failed, where)
        if finished:
            print(f"sweep report: {where / (REPORT_NAME + '.md')}", file=sys.stderr)

    def _register_exit_hook(self) -> None:
        if not self._exit_hook:
            atexit.register(self._at_exit)
            self._exit_hook = True

    def _at_exit(self) -> None:
        """The process ends inside a job or before ``on_multirun_end``: record the job
        as failed and write the final report."""
        if self._job is not None:
            self._guard(self._abandon_job)
        if self._sweep_dir is not None:
            self._guard(self._report, self._sweep_dir, True)
            self._sweep_dir = None

    @staticmethod
    def _guard(step: Any, *args: Any) -> None:
        """Run one step; log instead of raising, so the sweep itself never fails here."""
        try:
            step(*args)
        except Exception:
            log.exception("sweep report: %s failed", getattr(step, "__name__", step))
