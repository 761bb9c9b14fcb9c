"""Folder runs on Ray Data: ``python -m runtime upscale DIR -o OUT --ray local|ADDRESS
[--workers N] [--threads T]``.

The driver (this process) lists the folder with the single-process run's ``plan_folder``, so
every check made before the first image (and its one line, exit 2) is the same.  The jobs go
to Ray Data as one row each; ``map_batches`` with a callable class runs them on an actor
pool of ``--workers`` actors, each holding one ``Pipeline`` loaded once, with ``--threads``
threads per graph (and as many CPUs reserved).  An actor reads the input and writes the
outputs itself (same path on every node, or a shared file system: docs/DEPLOY.md), by the
single-process run's own per-file code, ``batch.run_folder`` on a one-job list: the same
request and seed for every file, so the outputs are byte-identical to a single-process run;
a file that fails is one ``failed:`` line and the job goes on; outputs are written
atomically by the same writer; ``--skip-existing`` resumes.  The driver prints each output
path as it arrives, progress over files with the time left, and the summary; exit 1 when
any file failed.  Ctrl-C (or SIGTERM) stops the pool: a ``local`` instance is shut down
with its workers, and the temporaries of writes they did not finish are removed.
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

from .batch import Job, Summary, file_progress, run_folder
from .console import PROG, Terminated, say
from .errors import LdmindError
from .output_paths import remove_stale_temporaries
from .ray_cluster import connect, disconnect, error_line, gpus_per_worker, local_cpus, require_ray, worker_threads
from .request import UpscaleRequest

# Actor restarts after a worker process dies (and retries of its file): none on one machine,
# where a death is a crash or the kernel's OOM killer that a restart would only repeat (and
# Ray's driver would log a warning about restarts); a few on a cluster, where a node can go.
LOCAL_RESTARTS, CLUSTER_RESTARTS = 0, 3
# seconds to wait, after Ctrl-C, for the killed workers' temporaries to become removable
_SWEEP_SECONDS = 5.0


class FolderWorker:
    """A Ray Data actor: one loaded pipeline; each call runs a batch of jobs (rows of
    ``index``, ``src``, ``outputs`` as JSON) and returns one row per job: its ``status``
    (done, skipped, failed), the paths ``said`` (JSON), the ``error`` line, ``seconds``."""

    def __init__(self, engines: str, backend: str, tile: int | None, threads: int, request: UpscaleRequest,
                 depth: int | str, save: Callable, skip_existing: bool, precision: str = "auto"):
        from .pipeline import Pipeline

        self.pipe = Pipeline.load(engines, backend=backend, tile=tile, threads=threads, precision=precision)
        self.request, self.depth, self.save, self.skip_existing = request, depth, save, skip_existing

    def __call__(self, batch: dict) -> dict:
        out: dict[str, list] = {"index": [], "status": [], "said": [], "error": [], "seconds": []}
        for index, src, outputs in zip(batch["index"], batch["src"], batch["outputs"]):
            job = Job(Path(str(src)), tuple(Path(o) for o in json.loads(str(outputs))))
            s, said, failed = Summary(), [], []
            t = time.perf_counter()
            run_folder([job], self.pipe, self.request, self.depth, self.save, self.skip_existing, said.append,
                       failed.append, lambda *_: None, s)
            out["index"].append(int(index))
            out["status"].append("done" if s.done else "skipped" if s.skipped else "failed")
            out["said"].append(json.dumps(said))
            out["error"].append(failed[0] if failed else "")
            out["seconds"].append(time.perf_counter() - t)
        return out


def upscale_folder(args, request: UpscaleRequest, jobs: list[Job], save: Callable) -> int:
    """The folder run of ``upscale DIR -o OUT --ray ...`` (module doc): the exit status."""
    require_ray()
    from .bundle import load_bundle

    bundle = load_bundle(args.engines, verify=False)     # a bad engine directory: its one line, here
    workers = args.workers or 1
    threads = worker_threads(args.threads, workers, args.ray)
    started = connect(args.ray, local_cpus(workers, threads) if args.ray == "local" else None)
    out = Path(args.output)
    summary = Summary()
    try:
        if not args.quiet:
            say(f"{bundle.name}: {len(jobs)} images from {args.input} on Ray ({args.ray}): {workers} "
                f"worker(s) x {threads} thread(s), backend {args.backend}", sys.stderr)
        out.mkdir(exist_ok=True)
        run_on_ray(jobs, args.engines, args.backend, args.tile, threads, workers, request, args.depth, save,
                   args.skip_existing, say, lambda line: say(f"{PROG}: failed: {line}", sys.stderr),
                   file_progress(quiet=args.quiet), summary,
                   restarts=LOCAL_RESTARTS if args.ray == "local" else CLUSTER_RESTARTS, precision=args.precision)
    except (KeyboardInterrupt, Terminated) as e:
        e.add_note(f"{summary.line()} before it; --skip-existing resumes")   # main's one line says it
        disconnect(started)
        started = False
        sweep_temporaries(jobs)
        raise
    finally:
        disconnect(started)
    say(f"{PROG}: {summary.line()}", sys.stderr)
    return 1 if summary.failed else 0


def run_on_ray(jobs: list[Job], engines: str, backend: str, tile: int | None, threads: int, workers: int,
               request: UpscaleRequest, depth: int | str, save: Callable, skip_existing: bool,
               say: Callable[[str], None], report: Callable[[str], None],
               progress: Callable[[int, int, float], None], s: Summary | None = None,
               restarts: int = LOCAL_RESTARTS, seconds: list | None = None, precision: str = "auto") -> Summary:
    """``batch.run_folder`` on a Ray actor pool of ``workers`` (this process must be connected
    to Ray): the same callbacks and ``Summary``, results in the order they complete.
    ``seconds``: each upscaled file's time on its worker is appended (benchmarks)."""
    ray = require_ray()
    from ray.data import ActorPoolStrategy

    s = s if s is not None else Summary()
    rows = [{"index": k, "src": str(j.src), "outputs": json.dumps([str(o) for o in j.outputs])}
            for k, j in enumerate(jobs)]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))     # one block per file: even spread
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing actor options this way, and names no other for these two;
        # without them Ray Data restarts a dead actor and retries its file forever
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        ds = ds.map_batches(FolderWorker, batch_size=1, num_cpus=threads, num_gpus=gpus_per_worker(backend),
                            compute=ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=2),
                            fn_constructor_kwargs=dict(engines=str(engines), backend=backend, tile=tile,
                                                       threads=threads, request=request, depth=depth, save=save,
                                                       skip_existing=skip_existing, precision=precision),
                            max_restarts=restarts, max_task_retries=restarts)
    t0 = time.perf_counter()
    finished = attempted = 0
    results = ds.iter_rows()
    try:
        for row in results:
            finished += 1
            status = row["status"]
            if status == "skipped":
                s.skipped += 1
            else:
                attempted += 1
                if seconds is not None:
                    seconds.append(float(row["seconds"]))
                if status == "done":
                    s.done += 1
                    for line in json.loads(row["said"]):
                        say(line)
                else:
                    s.failed += 1
                    report(row["error"])
            s.seconds = time.perf_counter() - t0
            left = len(jobs) - finished
            progress(finished, len(jobs), s.seconds / attempted * left if attempted else float("nan"))
    except ray.exceptions.RayError as e:
        raise LdmindError(f"a Ray worker failed: {error_line(e)}") from None
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()             # stops the pool when the driver stops early
    return s


def sweep_temporaries(jobs: list[Job]) -> list[Path]:
    """After an interrupt: remove the temporaries that the killed workers left in the output
    folders (``remove_stale_temporaries``: only ours, only of dead processes), waiting up to
    ``_SWEEP_SECONDS`` for the workers to be gone.  Only the workers on this machine can be
    told dead; a cluster's other nodes' are removed by the next write into the folder."""
    folders = sorted({o.parent for j in jobs for o in j.outputs})
    removed: list[Path] = []
    deadline = time.monotonic() + _SWEEP_SECONDS
    quiet_rounds = 0
    while time.monotonic() < deadline and quiet_rounds < 4:
        found = [p for f in folders for p in remove_stale_temporaries(f)]
        removed += found
        quiet_rounds = 0 if found else quiet_rounds + 1
        time.sleep(0.25)
    return removed
