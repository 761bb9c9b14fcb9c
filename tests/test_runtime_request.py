"""``runtime/request.py``: the parsers the CLI and the service share, and the request objects
with their one validation (no engines needed)."""
from __future__ import annotations

import argparse
import inspect

import pytest

from ldmind_ref.core import contract
from runtime.errors import InputError
from runtime.pipeline import Pipeline
from runtime.request import (GenerateRequest, UpscaleRequest, int_at_least, integer, parse_backproject, parse_depth,
                             parse_eta, parse_fidelity, parse_format, parse_quality, parse_sampler, parse_scale,
                             parse_size)


@pytest.mark.parametrize("parse,text,message", [
    (parse_scale, "abc", "scale must be a number, got 'abc'"),
    (parse_scale, "nan", "scale must be a finite number > 0, got nan"),
    (parse_size, "32by32", "size must be WIDTHxHEIGHT in pixels, e.g. 512x384, got '32by32'"),
    (parse_size, "0x10", "size must be positive, got '0x10'"),
    (parse_eta, "-1", "eta must be a finite number >= 0, got -1"),
    (parse_eta, "x", "eta must be a number, got 'x'"),
    (parse_fidelity, "1.5", "fidelity must be a number in 0..1, got 1.5"),
    (parse_fidelity, "-0.1", "fidelity must be a number in 0..1, got -0.1"),
    (parse_fidelity, "nan", "fidelity must be a number in 0..1, got nan"),
    (parse_fidelity, "high", "fidelity must be a number, got 'high'"),
    (parse_backproject, "101", "--backproject must be in 0..100, got 101"),
    (parse_quality, "0", "--quality must be in 1..100, got 0"),
    (parse_depth, "12", "--depth must be 8, 16 or auto, got '12'"),
    (parse_sampler, "euler", "sampler must be one of ddim, dpm++2m, got 'euler'"),
    (parse_format, "gif", "format must be one of png"),
    (int_at_least(1, "--steps"), "0", "--steps must be >= 1, got 0"),
    (integer("seed"), "x" * 50, "seed must be an integer, got '" + "x" * 40 + "'"),
])
def test_parsers_refuse_with_one_line(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as e:
        parse(text)
    assert str(e.value).startswith(message)


def test_parsers_accept():
    assert parse_size("12X8") == (12, 8) and parse_scale("2.5") == 2.5 and parse_eta("0") == 0.0
    assert parse_depth("auto") == "auto" and parse_depth("16") == 16 and parse_format(".JPG") == "JPEG"
    assert parse_fidelity("0") == 0.0 and parse_fidelity("1") == 1.0 and parse_fidelity("0.25") == 0.25


@pytest.mark.parametrize("kw,message", [
    (dict(), contract.SCALE_OR_SIZE),
    (dict(scale=2, size=(4, 4)), contract.SCALE_AND_SIZE),
    (dict(scale=float("inf")), "scale must be a finite number > 0, got inf"),
    (dict(size=(0, 4)), "size must be positive, got (0, 4)"),
    (dict(scale=2, steps=0), "steps must be >= 1, got 0"),
    (dict(scale=2, eta=-0.5), "eta must be a finite number >= 0, got -0.5"),
    (dict(scale=2, fidelity=1.01), "fidelity must be a number in 0..1, got 1.01"),
    (dict(scale=2, fidelity=float("nan")), "fidelity must be a number in 0..1, got nan"),
    (dict(scale=2, fidelity=True), "fidelity must be a number in 0..1, got True"),
    (dict(scale=2, fidelity="0.5"), "fidelity must be a number in 0..1, got 0.5"),
    (dict(scale=2, num_samples=contract.MAX_SAMPLES + 1), "num_samples must be at most 1024, got 1025"),
    (dict(scale=2, backproject=101), "back-projection iterations must be an integer in 0..100, got 101"),
    (dict(scale=2, schedule="fast"), "schedule must be one of full, paper, got 'fast'"),
    (dict(scale=2, latent_overlap=-1), "latent overlap must be >= 0, got -1"),
])
def test_upscale_request_checks_once(kw, message):
    with pytest.raises(InputError) as e:
        UpscaleRequest(**kw)
    assert str(e.value) == message


def test_requests_are_the_pipelines_arguments():
    """Every field is a keyword of the pipeline call it is made for, defaults from the contract."""
    up = UpscaleRequest(scale=2)
    assert set(up.kwargs()) <= set(inspect.signature(Pipeline.upscale).parameters)
    assert (up.steps, up.eta, up.sampler, up.backproject) == (contract.DEFAULT_STEPS, contract.DEFAULT_ETA,
                                                             contract.DEFAULT_SAMPLER, contract.DEFAULT_BACKPROJECT)
    assert up.fidelity == contract.DEFAULT_FIDELITY
    gen = GenerateRequest(size=(16, 8), fidelity=1)
    assert gen.kwargs()["fidelity"] == 1
    assert set(gen.kwargs()) <= set(inspect.signature(Pipeline.generate).parameters)
    with pytest.raises(TypeError):
        GenerateRequest()                    # a size is required
    with pytest.raises(AttributeError):
        up.steps = 3                         # frozen
    args = argparse.Namespace(**up.kwargs(), input="x", output="y")
    assert UpscaleRequest.from_namespace(args) == up
