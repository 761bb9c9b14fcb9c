"""Ray (issue 21), on a real local Ray instance, no mocks (run by tests/test_ray.py in a pytest
process of its own): a folder run on 2 Ray workers equals
the single-process run byte for byte and reports the corrupt file; a resumed run redoes only
what is missing; the service on Ray Serve with 2 replicas answers the cases of
tests/test_runtime_serve.py (the same helpers and parameters), spreads requests over the
replicas, and answers 503 with Retry-After and 504 as without Ray.  Without Ray, ``--ray`` is
one line, exit 2, and nothing else imports Ray (these run whether Ray is installed or not).

One Ray instance for the module (2 CPUs, no dashboard): the CLI runs in this process and
uses it as it finds it (``ray_cluster.connect``)."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, shipped_photos
from runtime.cli import main

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install 'ldmind[ray]')")
FAST = ["--steps", "1", "--backproject", "1"]
# Ray's own deprecations (Serve's models on this pydantic, Ray Data's context)
pytestmark = [pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`:DeprecationWarning"),
              pytest.mark.filterwarnings(r"ignore:.*is deprecated:DeprecationWarning:ray\.data\..*")]
RAY_MISSING = "--ray needs Ray: install the ray extra: pip install 'ldmind[ray]'"


# -- without Ray ---------------------------------------------------------------------------------
BLOCK_RAY = """
import sys
class Block:                      # `import ray` fails, and is recorded
    tried = []
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            Block.tried.append(name)
            raise ImportError("ray is blocked")
sys.meta_path.insert(0, Block())
from runtime.cli import main
code = main(sys.argv[1:])
assert "ray" not in sys.modules, "ray was imported"
print("tried:" + ",".join(Block.tried), file=sys.stderr)
sys.exit(code)
"""


def _blocked(argv: list) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_RAY, *map(str, argv)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_without_ray_the_runtime_never_imports_it_and_ray_is_one_line(sr_engines, tmp_path):
    src = _photo_folder(tmp_path / "in", broken=False)[0]
    r = _blocked(["upscale", src, "-o", tmp_path / "out", "--engines", sr_engines, "--scale", "2", "-q", *FAST])
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "tried:"                     # a run: Ray never asked for
    for argv in (["upscale", src, "-o", tmp_path / "o2", "--scale", "2", "--ray", "local", "--workers", "2"],
                 ["serve", "--ray", "local", "--replicas", "2"]):
        r = _blocked([*argv, "--engines", sr_engines])
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and lines[0] == f"python -m runtime: error: {RAY_MISSING}", r.stderr
        assert len(lines) == 2 and lines[1].startswith("tried:ray") and r.stdout == ""
    assert not (tmp_path / "o2").exists()


@pytest.mark.parametrize("argv,says", [
    (["upscale", "{src}", "-o", "{tmp}/o", "--scale", "2", "--workers", "2"], "give --ray local or --ray ADDRESS"),
    (["upscale", "{png}", "-o", "{tmp}/o.png", "--scale", "2", "--ray", "local"], "apply to a folder input"),
    (["serve", "--replicas", "2"], "give --ray local or --ray ADDRESS"),
    (["upscale", "{src}", "-o", "{tmp}/o", "--scale", "2", "--ray", "local", "--workers", "0"], "--workers must be >= 1"),
])
def test_ray_options_are_checked(argv, says, sr_engines, tmp_path, capsys):
    src, names = _photo_folder(tmp_path / "in", broken=False)
    argv = [a.format(src=src, png=src / names[0], tmp=tmp_path) for a in argv] + ["--engines", str(sr_engines)]
    try:
        code = main(argv)
    except SystemExit as e:            # argparse's refusals
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and says in err, err


# -- folder runs -----------------------------------------------------------------------------------
def _photo_folder(src: Path, broken: bool = True) -> tuple[Path, list[str]]:
    """Crops of the shipped photos at mixed sizes (PNG and JPEG) and, with ``broken``, a
    corrupt PNG: (the folder, the names of its good images)."""
    src.mkdir(parents=True, exist_ok=True)
    names = []
    for k, p in enumerate(shipped_photos()[:5]):
        h, w = 8 + 3 * k, 14 - 2 * k
        crop = Image.open(p).convert("RGB").crop((40, 40, 40 + w, 40 + h))
        name = f"p{k}.{'jpg' if k % 2 else 'png'}"
        crop.save(src / name)
        names.append(name)
    if broken:
        (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)   # a signature, then nothing
    return src, names


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ray_local():
    """The module's Ray instance: 2 CPUs, no dashboard."""
    if not HAVE_RAY:
        pytest.skip("Ray is not installed (pip install 'ldmind[ray]')")
    from runtime.ray_cluster import connect, disconnect

    started = connect("local", 2)
    yield
    disconnect(started)


def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@needs_ray
def test_folder_on_two_ray_workers_equals_single_process(ray_local, sr_engines, tmp_path, capsys):
    src, names = _photo_folder(tmp_path / "in")
    common = ["upscale", src, "--engines", sr_engines, "--backend", "cpu", "--scale", "2.5", "--seed", "7",
              "--threads", "1", *FAST]     # the same threads per graph: ONNX Runtime's sums depend on it
    code, out, err = _cli([*common, "-o", tmp_path / "single", "-q"], capsys)
    assert code == 1, err
    code, out, err = _cli([*common, "-o", tmp_path / "ray", "--ray", "local", "--workers", "2"], capsys)
    assert code == 1, err                                                   # broken.png failed
    single, on_ray = _files(tmp_path / "single"), _files(tmp_path / "ray")
    assert sorted(single) == sorted(names) and on_ray == single             # byte for byte
    assert sorted(Path(line).name for line in out.split()) == sorted(names)
    failed = [ln for ln in err.splitlines() if "failed:" in ln]
    assert len(failed) == 1 and "broken.png" in failed[0] and "Traceback" not in err
    assert "2 worker(s) x 1 thread(s)" in err.splitlines()[0]
    assert f"{len(names)} done, 0 skipped, 1 failed in " in err.strip().splitlines()[-1]
    assert f"files: {len(names) + 1}/{len(names) + 1}" in err and "left" in err       # progress over files
    assert not list((tmp_path / "ray").glob(".ldmind-*"))                  # no temporaries


@needs_ray
def test_resumed_ray_run_redoes_only_the_missing_outputs(ray_local, sr_engines, tmp_path, capsys):
    src, names = _photo_folder(tmp_path / "in", broken=False)
    out = tmp_path / "out"
    argv = ["upscale", src, "--engines", sr_engines, "--backend", "cpu", "--scale", "2", "-o", out, "--ray", "local",
            "--workers", "2", "--threads", "1", *FAST]
    code, _, err = _cli([*argv, "-q"], capsys)
    assert code == 0, err
    first = _files(out)
    kept = {n: (out / n).stat().st_mtime_ns for n in names[2:]}
    for n in names[:2]:
        (out / n).unlink()                                                  # as if stopped there
    code, stdout, err = _cli([*argv, "--skip-existing"], capsys)
    assert code == 0, err
    assert sorted(Path(line).name for line in stdout.split()) == sorted(names[:2])     # only those redone
    assert f"2 done, {len(names) - 2} skipped, 0 failed" in err
    assert {n: (out / n).stat().st_mtime_ns for n in names[2:]} == kept and _files(out) == first


# -- the service on Ray Serve ------------------------------------------------------------------------
HOLD = 10 ** 6     # a request with seed HOLD + s is held s seconds by the replica's stand-in pipeline


class Holding:
    """The pipeline, but a request whose seed is HOLD + s waits s seconds first, calling
    ``progress`` meanwhile as the real work does between steps (so a deadline aborts it)."""

    def __init__(self, pipe):
        self._pipe = pipe

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def upscale(self, image, progress=None, seed=0, **kw):
        if HOLD <= seed < HOLD + 1000:
            until = time.monotonic() + seed - HOLD
            while time.monotonic() < until:
                if progress:
                    progress("held", 0, 1)
                time.sleep(0.02)
        return self._pipe.upscale(image, progress=progress, seed=seed, **kw)


def _holding_pipeline(engines: str):
    from runtime import Pipeline

    return lambda: Holding(Pipeline.load(engines, backend="cpu", threads=1))


class RemoteState:
    """``service.state()`` of the cases, read over HTTP (/v1/info of the replica that answers)."""

    def __init__(self, port: int, call):
        self.port, self.call = port, call

    def state(self) -> dict:
        return json.loads(self.call(self.port, "/v1/info")[2])["queue"]


@pytest.fixture(scope="module")
def cases():
    pytest.importorskip("starlette")
    import test_runtime_serve
    return test_runtime_serve


@pytest.fixture(scope="module")
def ray_service(ray_local, cases, sr_engines):
    """The service's test settings (timeout 5 s) on Ray Serve, 2 replicas: (port, RemoteState)."""
    import ray.cloudpickle
    from ray import serve

    from runtime import ray_serve
    from runtime.serve import bind

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])     # Holding, to the replicas
    settings = dataclasses.replace(cases.SETTINGS, timeout_s=5.0)
    probe = bind("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    started = ray_serve.start("local", "127.0.0.1", port, _holding_pipeline(str(sr_engines)), settings, 2)
    try:
        yield port, RemoteState(port, cases.call)
    finally:
        ray_serve.stop(started)
        serve.shutdown()


@needs_ray
def test_ray_serve_answers_the_service_cases(ray_service, cases, sr_engines):
    from runtime import Pipeline

    port, state = ray_service
    server = (port, None, state)
    pipe = Pipeline.load(sr_engines, backend="cpu", threads=1)      # the replicas' threads: the same bits
    cases.test_upscale_equals_the_pipeline(server, pipe)
    cases.test_sixteen_bit_upload_comes_back_sixteen_bit(server, pipe)
    [params] = [m for m in cases.test_bad_requests_are_4xx_json.pytestmark if m.name == "parametrize"]
    for query, body, status, says in params.args[1]:
        cases.test_bad_requests_are_4xx_json(server, query, body, status, says)
    cases.test_body_limit_413_before_reading_it(server)
    cases.test_health_info_and_unknown_paths(server)
    # requests spread over the replicas, one after another and at once
    lr = cases.png(cases.LR)
    replicas = [cases.call(port, f"/v1/upscale?scale=2&{cases.FAST}", lr)[1]["X-Ldmind-Replica"] for _ in range(8)]
    assert len(set(replicas)) == 2, replicas


@needs_ray
def test_ray_serve_full_replicas_503_and_deadline_504(ray_service, cases):
    port, state = ray_service
    lr = cases.png(cases.LR)
    # three requests held 3 s on two replicas of capacity 1: at least one is refused at once
    results: list = []

    def held():
        t0 = time.monotonic()
        results.append((*cases.call(port, f"/v1/upscale?scale=2&seed={HOLD + 3}&{cases.FAST}", lr),
                        time.monotonic() - t0))
    threads = [threading.Thread(target=held) for _ in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.3)
    for t in threads:
        t.join(60)
    busy = [r for r in results if r[0] == 503]
    assert len(results) == 3 and busy and all(r[0] in (200, 503) for r in results), [r[0] for r in results]
    for status, headers, data, seconds in busy:
        assert int(headers["Retry-After"]) >= 1 and "busy" in cases.error(status, data) and seconds < 2.5
    assert cases.call(port, f"/v1/upscale?scale=2&{cases.FAST}", lr)[0] == 200            # recovered
    # a request held past the 5 s deadline: 504, and its worker is freed
    t0 = time.monotonic()
    status, _, data = cases.call(port, f"/v1/upscale?scale=2&seed={HOLD + 60}&{cases.FAST}", lr)
    assert status == 504 and "5 s timeout" in cases.error(status, data) and 4.5 < time.monotonic() - t0 < 20
    for _ in range(100):
        if all(state.state()["running"] == 0 for _ in range(4)):
            break
        time.sleep(0.05)
    assert state.state()["running"] == 0
    statuses = [cases.call(port, f"/v1/upscale?scale=2&{cases.FAST}", lr)[0] for _ in range(4)]
    assert statuses == [200] * 4


def test_ray_modules_stay_lazy():
    """Importing the Ray front ends imports no Ray (only a --ray run does)."""
    code = ("import sys; import runtime.ray_batch, runtime.ray_serve, runtime.ray_cluster, runtime.commands; "
            "sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120).returncode == 0

