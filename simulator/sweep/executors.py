"""Where cells run: in this process, on a local process pool, or on a Ray cluster.

One thin interface: `results(jobs)` runs `run_cell` on every job and yields each row as it
finishes, in any order. The executors schedule nothing themselves: the pool and Ray do; they
only keep a bounded number of cells submitted ahead (so the sweep's own memory does not grow
with the number of cells) and, on Ctrl-C or any error in the sweep, stop their workers before
the exception goes on (cells already finished stay on disk; the others run next time).

Ray is optional (`pip install 'ticktape[ray]'`). Its workers read sessions by path, so every
node needs the data directory at the same path (a shared filesystem) or an object-store URI
that pyarrow reads, and writes its cells under the sweep directory (which must be shared too).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from importlib.util import find_spec
from itertools import islice
from typing import TYPE_CHECKING, Any, Final, Protocol

from simulator.errors import ConfigError
from simulator.sweep.cell import CellJob, Row, failed_row, run_cell

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

AHEAD: Final = 2
"""Cells submitted per worker beyond the running one: enough to keep every worker busy."""
RAY_INSTALL: Final = "--ray needs Ray: pip install 'ticktape[ray]' (or pip install ray)"


class Executor(Protocol):
    name: str
    workers: int

    def results(self, jobs: Iterable[CellJob]) -> Iterator[Row]:
        """Run every job; yield each row as its cell finishes (any order)."""


class SerialExecutor:
    """Cells one after another in this process: no start-up cost; what tests compare with."""

    name = "serial"
    workers = 1

    def __init__(self, run: Callable[[CellJob], Row] = run_cell) -> None:
        self._run = run

    def results(self, jobs: Iterable[CellJob]) -> Iterator[Row]:
        for job in jobs:
            yield self._run(job)


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the sweep, which stops them (a terminal sends SIGINT to
    the whole process group; a worker dying mid-cell on its own would look like a crash)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class PoolExecutor:
    """A local pool of `workers` processes (spawned: each starts clean, whatever the sweep
    imported), reused for every cell: process start and imports are paid once per worker."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1; found {self.workers}")

    def results(self, jobs: Iterable[CellJob]) -> Iterator[Row]:
        before = set(multiprocessing.active_children())
        pending = iter(jobs)
        running: dict[Future[Row], CellJob] = {}
        pool = self._pool()
        try:
            self._submit(pool, running, islice(pending, self.workers * AHEAD))
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield self._row(future, running.pop(future))
                if done and isinstance(next(iter(done)).exception(), BrokenProcessPool):
                    pool.shutdown(wait=True)  # every worker is gone: start a fresh pool
                    pool = self._pool()
                self._submit(pool, running, islice(pending, len(done)))
        except BaseException:  # Ctrl-C, or the sweep stopped reading: stop the workers now
            _stop(pool, set(multiprocessing.active_children()) - before)
            raise
        pool.shutdown(wait=True)

    def _pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=_ignore_sigint)

    @staticmethod
    def _submit(
        pool: ProcessPoolExecutor, running: dict[Future[Row], CellJob], jobs: Iterable[CellJob]
    ) -> None:
        for job in jobs:
            running[pool.submit(run_cell, job)] = job

    @staticmethod
    def _row(future: Future[Row], job: CellJob) -> Row:
        """The cell's row; a worker that died (crash, out of memory) fails its cells."""
        error = future.exception()
        if error is None:
            return future.result()
        if not isinstance(error, BrokenProcessPool):
            raise error
        return failed_row(job, "a worker process died (crash or out of memory) with this "
                          "cell running or queued on it")  # fmt: skip


def _stop(pool: ProcessPoolExecutor, workers: set[BaseProcess]) -> None:
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        process.terminate()
    for process in workers:
        process.join()


class RayExecutor:
    """Cells as Ray tasks. `address` is `local` (start a Ray instance here, stopped at the
    end), `auto` (the cluster this machine belongs to) or `ray://host:10001` (Ray Client)."""

    name = "ray"

    def __init__(self, address: str, *, num_cpus: int | None = None) -> None:
        if find_spec("ray") is None:
            raise ConfigError(RAY_INSTALL)
        self.address = address
        self._num_cpus = num_cpus
        self.workers = 0  # known once connected: the cluster's CPUs

    def results(self, jobs: Iterable[CellJob]) -> Iterator[Row]:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            _ray_init(ray, self.address, self._num_cpus)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1, max_retries=0)(run_cell)
        pending = iter(jobs)
        running: list[Any] = []
        try:
            running = [task.remote(j) for j in islice(pending, self.workers * AHEAD)]
            while running:
                done, running = ray.wait(running, num_returns=1)
                for ref in done:
                    yield ray.get(ref)
                running += [task.remote(j) for j in islice(pending, len(done))]
        except BaseException:
            for ref in running:
                ray.cancel(ref, force=True)
            raise
        finally:
            if started_here:
                ray.shutdown()


def _ray_init(ray: Any, address: str, num_cpus: int | None) -> None:  # noqa: ANN401 - the ray module
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": "error"}
    if address == "local":
        options.update(include_dashboard=False, num_cpus=num_cpus)
    else:
        options["address"] = address
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as e:  # Ray's own, for a bad address
        where = "start a local Ray instance" if address == "local" else f"join Ray at {address}"
        raise ConfigError(
            f"--ray {address}: could not {where} ({type(e).__name__}: {e}); a cluster address "
            "is auto (this machine is a node: `ray start`) or ray://HEAD:10001 (Ray Client, "
            "`pip install 'ray[client]'`)"
        ) from e


def executor_for(workers: int | None, ray_address: str | None) -> Executor:
    """--workers N (1: in this process) or --ray ADDRESS; the pool by default."""
    if ray_address is not None:
        return RayExecutor(ray_address, num_cpus=workers)
    if workers == 1:
        return SerialExecutor()
    return PoolExecutor(workers)
