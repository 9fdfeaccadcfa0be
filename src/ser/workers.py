"""Worker processes that never outlive the command that started them.

Feature extraction (``ser features --jobs``) and studies (``ser compare --parallel``)
hand work to *spawned* processes (torch's thread pools and CUDA do not survive a fork).
``concurrent.futures.ProcessPoolExecutor`` left two ways to lose control of them:

- Ctrl-C: the terminal's SIGINT reached every worker, each printed a traceback, and the
  executor's shutdown then waited for the runs in progress to finish (minutes);
- a parent killed by SIGTERM or SIGKILL (a scheduler, ``timeout``, an OOM kill) left its
  workers training on, orphaned, holding cores and writing into the run folder.

:func:`spawn_pool` gives a ``multiprocessing`` pool whose workers ignore SIGINT (the
parent alone decides: its ``with`` block joins them after the work, or terminates them
on an error or Ctrl-C) and exit on their own the moment their parent process is gone,
however it died.

Example:
    >>> with spawn_pool(2) as pool:
    ...     sorted(pool.imap_unordered(abs, [-1, -2, 3]))
    [1, 2, 3]
"""
from __future__ import annotations

import multiprocessing as mp
import multiprocessing.pool
import os
import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

ORPHAN_EXIT_CODE = 70  # a worker whose parent died exits with this (EX_SOFTWARE): nothing to report to


def cpu_cores() -> int:
    """The CPU cores this process may use (its affinity mask: a container's or ``taskset``'s
    share, where ``os.cpu_count()`` would count the whole machine)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def exit_with_parent() -> None:
    """In a worker: ignore SIGINT, exit cleanly on SIGTERM, and at once when the parent ends.

    A daemon thread waits on the parent's sentinel (no polling), so the watch costs
    nothing while the parent lives. Does nothing in a process that has no
    ``multiprocessing`` parent.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Pool.terminate() sends SIGTERM: leave through SystemExit, so the worker's finalizers
    # release what it holds (else the resource tracker warns of "leaked semaphores")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent's end of the pipe closes: it exited or was killed
        os._exit(ORPHAN_EXIT_CODE)  # no cleanup handlers: the work is abandoned, not finished

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init(initializer: Optional[Callable[..., Any]], initargs: tuple) -> None:
    exit_with_parent()
    if initializer is not None:
        initializer(*initargs)


@contextmanager
def spawn_pool(processes: int, initializer: Optional[Callable[..., Any]] = None,
               initargs: tuple = ()) -> Iterator[multiprocessing.pool.Pool]:
    """A pool of ``processes`` spawned workers that stop with their parent, as a context manager.

    Leaving the ``with`` block ends the workers before the command returns: closed and
    joined when the block finished, terminated at once when it raised (an error in a
    task, Ctrl-C), so no run goes on after the command has given up.

    Args:
        processes: the number of workers (at least 1).
        initializer, initargs: run once in each worker, after the parent watch is set up.
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    pool = mp.get_context("spawn").Pool(processes, initializer=_init, initargs=(initializer, initargs))
    try:
        yield pool
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()


__all__ = ["ORPHAN_EXIT_CODE", "cpu_cores", "exit_with_parent", "spawn_pool"]
