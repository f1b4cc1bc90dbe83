"""Where the data commands' work runs: in this process, in a pool of local processes, or as a Ray Data job.

`data build` (the per-image function over chunks of inputs) and `data realify` (img2img over batches of
rows) hand their work here as units. A worker is built once per process by ``make()`` (a picklable
callable, so a spawned process or a Ray actor can build its own); ``worker.warm_up()`` loads what it
loads lazily, ``worker.run(unit)`` returns the unit's results. Results come back flattened, in the order
of the units, whichever engine runs them.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from controlkit import conditions


class Worker(Protocol):
    def warm_up(self) -> None: ...

    def run(self, unit: Any) -> list[Any]: ...


def start(engine: str) -> None:
    """Start the engine's runtime now, before the command takes SIGTERM over (``graceful_stop``): ``ray.init``
    installs a SIGTERM handler of its own that exits at once, which would undo the graceful stop."""
    if engine == "ray":
        _ray()


def _ray():
    """The ray module, its runtime started (a local Ray, or the cluster ``ray.init`` connects to)."""
    from controlkit.errors import require

    ray = require("ray", "ray")
    if not ray.is_initialized():
        ray.init()
    return ray


def results(
    engine: str, make: Callable[[], Worker], units: Iterable[Any], workers: int, gpus_per_worker: float = 0.0
) -> Iterator[Any]:
    """Every unit's results, in order: ``local`` processes (``workers`` of them) or Ray actors."""
    if engine == "ray":
        return ray_results(make, units, workers, gpus_per_worker)
    return local_results(make, units, workers)


def local_results(make: Callable[[], Worker], units: Iterable[Any], workers: int) -> Iterator[Any]:
    """The worker over ``units`` in order: in this process for one worker, else a process pool.

    At most ``4 * workers`` units are in flight, so a slow consumer (BLIP on a CPU) never piles up
    finished results in memory. Under fork the parent's warmed-up worker is shared (its detector weights
    load once); workers ignore Ctrl-C and SIGTERM (a machine going away signals every process): the main
    process saves what is finished and stops them.
    """
    worker = make()
    if workers == 1:
        for unit in units:
            yield from worker.run(unit)
        return
    from concurrent.futures import ProcessPoolExecutor

    import cv2

    fork = "fork" in multiprocessing.get_all_start_methods()
    if fork:
        worker.warm_up()
        fork = not _torch_started()
    threads = cv2.getNumThreads()
    if fork:
        cv2.setNumThreads(1)  # before the fork: a child must not touch a thread pool the parent started
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork" if fork else "spawn"),
        initializer=_init_quiet_worker,
        initargs=(make, worker if fork else None, {} if fork else conditions.registered()),
    )
    try:
        window: deque = deque()
        for unit in units:
            window.append(pool.submit(_run, unit))
            if len(window) >= 4 * workers:
                yield from window.popleft().result()
        while window:
            yield from window.popleft().result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        cv2.setNumThreads(threads)


def _torch_started() -> bool:
    """Whether torch is loaded here: a child forked after its OpenMP threads or CUDA started can hang."""
    return "torch" in sys.modules


_worker: Worker | None = None


def _init_quiet_worker(make: Callable[[], Worker], worker: Worker | None, factories: dict) -> None:
    """Pool initializer: ignore Ctrl-C and SIGTERM, know the conditions the parent registered at run time,
    build the worker once (or take the parent's, under fork).

    One OpenCV thread per process (N processes of N threads on N cores thrash): a spawned child sets it, a
    forked one inherits it from the parent, which set it before forking (in a child forked after the
    parent's OpenCV or OpenMP started its threads, touching them hangs for ever; torch's are left alone).
    """
    global _worker
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for name, factory in factories.items():
        conditions.register(name)(factory)
    if worker is None:
        import cv2

        cv2.setNumThreads(1)
    _worker = worker if worker is not None else make()


def _run(unit: Any) -> list[Any]:
    assert _worker is not None, "the pool initializer did not run in this process"
    return _worker.run(unit)


class _RayWorker:
    """Ray Data actor: the same worker, built once per actor."""

    def __init__(self, make: Callable[[], Worker]):
        import cv2

        cv2.setNumThreads(1)
        self.worker = make()

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"results": self.worker.run(row["unit"])}


def ray_results(
    make: Callable[[], Worker], units: Iterable[Any], workers: int, gpus_per_worker: float = 0.0
) -> Iterator[Any]:
    """The worker as a Ray Data job (a local Ray, or the cluster ``ray.init`` connects to), ``workers``
    actors of ``gpus_per_worker`` GPUs each."""
    ray = _ray()
    rows = [{"unit": unit} for unit in units]
    if not rows:
        return
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    options = {"num_gpus": gpus_per_worker} if gpus_per_worker else {}
    dataset = ray.data.from_items(rows).map(
        _RayWorker, fn_constructor_args=(make,), concurrency=workers, **options
    )
    for row in dataset.iter_rows():
        yield from row["results"]


def ray_gpus_per_worker() -> float:
    """One GPU per Ray actor where the cluster ``ray.init`` finds has GPUs, else none (CPU actors)."""
    return 1.0 if _ray().cluster_resources().get("GPU", 0) >= 1 else 0.0
