"""Joining Ray for ``--ray local|ADDRESS`` (the ``ray`` extra: ``pip install 'ldmind[ray]'``).

Ray is imported here and in the two Ray front ends (``ray_batch.py``, ``ray_serve.py``) only,
and only when ``--ray`` is given: the rest of the runtime never imports it.  ``local`` starts
a Ray instance on this machine for the one command and stops it at the end; any other
value is the address of a running cluster (``ray start --head`` printed it, or ``auto``),
which the command joins and leaves running.  In a process that is already connected (a test,
a notebook) the connection is used as it is and left open.
"""
from __future__ import annotations

import logging
import os
import signal
import threading

from .errors import LdmindError

RAY_MISSING = "--ray needs Ray: install the ray extra: pip install 'ldmind[ray]'"
# the backends that run on a GPU: each Ray worker or replica on one of them gets one GPU
GPU_BACKENDS = ("cuda", "ort-trt", "tensorrt")
# Ray's own loggers on the console: their INFO lines (execution plans, deprecations) are not
# the command's output (Ray Data's log file in the session folder keeps everything)
_QUIET_LOGGERS = ("ray", "ray.data", "ray.serve")


def require_ray():
    """The ``ray`` module, or ``LdmindError`` (one line, exit 2) when it is not installed."""
    try:
        import ray
    except ImportError:
        raise LdmindError(RAY_MISSING) from None
    return ray


def connect(address: str, num_cpus: int | None = None) -> bool:
    """Connect this process to Ray: ``local`` starts an instance with ``num_cpus`` CPUs
    (default: this machine's), anything else joins the cluster at that address.  Returns
    whether this call started the connection (then ``disconnect`` ends it)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    common = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    # Ray's core installs its own SIGTERM handler (a crash report, then abort): the command's
    # handler (an exception, so that cleanups run) is put back
    previous = signal.getsignal(signal.SIGTERM)
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, include_dashboard=False, **common)
        else:
            ray.init(address=address, **common)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        where = "start a local Ray instance" if address == "local" else f"join the Ray cluster at {address}"
        raise LdmindError(f"--ray {address}: cannot {where} ({_first_line(e)})") from None
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
    quiet()
    return True


def quiet() -> None:
    """Ray's console logging at ERROR, Ray Data's progress bars off (the command prints its own)."""
    try:
        from ray.data import DataContext     # configures Ray Data's loggers: first
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
    except ImportError:        # ray without the data extra: only the service is possible
        pass
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        files = [h for h in logger.handlers if isinstance(h, logging.FileHandler) or "File" in type(h).__name__]
        if files:              # Ray Data's own: the file keeps every level, the console errors only
            for h in logger.handlers:
                if h not in files:
                    h.setLevel(logging.ERROR)
        else:
            logger.setLevel(logging.ERROR)


def disconnect(started: bool) -> None:
    """End the connection ``connect`` started (a ``local`` instance stops with its workers)."""
    if started:
        require_ray().shutdown()


def local_cpus(workers: int, cpus_per_worker: int) -> int:
    """CPUs to give a ``local`` instance: this machine's, or more when the workers ask for
    more (Ray then oversubscribes rather than waiting for CPUs that never come)."""
    return max(os.cpu_count() or 1, workers * cpus_per_worker)


def worker_threads(threads: int, workers: int, address: str) -> int:
    """Threads per graph in each Ray worker: ``--threads`` when given, else on ``local`` this
    machine's cores shared among the workers, and 1 on a cluster (one core per worker: scale
    with --workers, or give --threads)."""
    if threads > 0:
        return threads
    return max(1, (os.cpu_count() or 1) // workers) if address == "local" else 1


def gpus_per_worker(backend: str) -> int:
    """GPUs to reserve for each worker or replica: 1 for a GPU backend (given by name: ``auto``
    reserves none), checked against the cluster so that the actors never wait for a GPU that
    does not exist.  Not executed here (no GPU)."""
    if backend not in GPU_BACKENDS:
        return 0
    if require_ray().cluster_resources().get("GPU", 0) < 1:
        raise LdmindError(f"--backend {backend} runs on a GPU, and this Ray cluster has none "
                          f"(start the GPU nodes with ray start --num-gpus N)")
    return 1


def error_line(e: BaseException) -> str:
    """A failure inside Ray (a worker's exception, wrapped) as one line: its innermost cause."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException) and cause is not e:
        return error_line(cause)
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # Ray's wrapped errors put the original exception's "Type: message" on the last line
    text = lines[-1] if lines else type(e).__name__
    return text[:300]
