"""What a request asks for, parsed and checked once: ``UpscaleRequest`` and ``GenerateRequest``,
and the parsers of their text forms, shared by the CLI (``runtime/cli.py``), the service
(``runtime/service.py``) and the folder run (``runtime/batch.py``).

The parsers take the text a user typed (a flag's value, a query parameter) and raise
``argparse.ArgumentTypeError`` with one line: argparse prints it after the flag, the service
answers it with 400.  The request dataclasses check the whole request once, in
``__post_init__`` (``InputError``), so one built in Python gets the same check as a parsed one.
Defaults, limits and messages are the contract's (``ldmind_ref.core.contract``); what depends on
the model (steps up to its timesteps, tile alignment) is the pipeline's to check.
"""
from __future__ import annotations

import argparse
import math
import numbers
from dataclasses import dataclass, fields
from typing import Callable

from ldmind_ref.core import contract, noise

from .errors import InputError
from .output_paths import OUTPUT_EXTENSIONS, output_extensions

Parser = Callable[[str], object]


# -- parsers of text ------------------------------------------------------------------------
def positive_number(what: str) -> Parser:
    """Finite numbers > 0; messages name ``what``."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(contract.NUMBER.format(what, repr(text))) from None
        if not math.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(contract.POSITIVE_NUMBER.format(what, text))
        return v
    return parse


parse_scale = positive_number("scale")


def parse_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` in pixels -> (width, height)."""
    parts = text.lower().split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(contract.SIZE_FORMAT.format(repr(text))) from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(contract.SIZE_POSITIVE.format(repr(text)))
    return w, h


def integer(what: str) -> Parser:
    """Any integer (the text quoted at most 40 characters long: it may come from a URL)."""
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(contract.INTEGER.format(what, repr(text[:40]))) from None
    return parse


def int_at_least(lo: int, what: str) -> Parser:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(contract.INTEGER.format(what, repr(text))) from None
        if v < lo:
            raise argparse.ArgumentTypeError(contract.AT_LEAST.format(what, lo, v))
        return v
    return parse


def int_in(lo: int, hi: int, what: str) -> Parser:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(contract.INTEGER.format(what, repr(text))) from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(contract.IN_RANGE.format(what, lo, hi, v))
        return v
    return parse


parse_backproject = int_in(0, contract.MAX_BACKPROJECT, "--backproject")
parse_quality = int_in(contract.MIN_QUALITY, contract.MAX_QUALITY, "--quality")


def parse_eta(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(contract.NUMBER.format("eta", repr(text))) from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(contract.ETA.format(text))
    return v


def parse_fidelity(text: str) -> float:
    """0..1: detail (0, the paper's sampler, the model's full diversity) against faithfulness (1)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(contract.NUMBER.format("fidelity", repr(text[:40]))) from None
    try:
        return noise.fidelity_arg(v)
    except ValueError:
        raise argparse.ArgumentTypeError(contract.FIDELITY.format(text[:40])) from None


def one_of(what: str, choices: tuple[str, ...]) -> Parser:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(contract.ONE_OF.format(what, ", ".join(choices), repr(text)))
        return text
    return parse


parse_sampler = one_of("sampler", contract.SAMPLERS)


def parse_depth(text: str) -> int | str:
    """Bits per value of the output: 8, 16, or "auto"."""
    if text == "auto":
        return text
    if text not in ("8", "16"):
        raise argparse.ArgumentTypeError(contract.DEPTH.format(repr(text)))
    return int(text)


def parse_port(text: str) -> int:
    v = int_at_least(0, "--port")(text)
    if v > 65535:
        raise argparse.ArgumentTypeError(contract.IN_RANGE.format("--port", 0, 65535, v))
    return v


def parse_format(text: str) -> str:
    """An output format by its extension (``png``, ``.JPG``, ...) -> Pillow's format name."""
    ext = "." + text.lower().lstrip(".")
    accepted = output_extensions()
    if ext not in accepted:
        raise argparse.ArgumentTypeError(contract.ONE_OF.format("format", ", ".join(e[1:] for e in accepted),
                                                                repr(text[:40])))
    return OUTPUT_EXTENSIONS[ext]


# -- the requests -------------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_size(size) -> None:
    if not (isinstance(size, tuple) and len(size) == 2 and all(_is_int(v) and v >= 1 for v in size)):
        raise InputError(contract.SIZE_POSITIVE.format(repr(size)))


@dataclass(frozen=True, kw_only=True)
class _Sampling:
    """What every request samples with (the pipeline's keyword arguments of the same names)."""
    steps: int = contract.DEFAULT_STEPS
    eta: float = contract.DEFAULT_ETA
    fidelity: float = contract.DEFAULT_FIDELITY
    seed: int = contract.DEFAULT_SEED
    num_samples: int = contract.DEFAULT_NUM_SAMPLES
    sampler: str = contract.DEFAULT_SAMPLER
    schedule: str = contract.DEFAULT_DDIM_SCHEDULE
    latent_tile: int | None = None          # None: chosen from the model
    latent_overlap: int | None = None

    def __post_init__(self):
        for name, lo in (("steps", 1), ("num_samples", 1)):
            v = getattr(self, name)
            if not _is_int(v) or v < lo:
                raise InputError(contract.AT_LEAST.format(name, lo, repr(v)))
        if self.num_samples > contract.MAX_SAMPLES:
            raise InputError(contract.TOO_MANY_SAMPLES.format(contract.MAX_SAMPLES, self.num_samples))
        if isinstance(self.eta, bool) or not isinstance(self.eta, numbers.Real) or not math.isfinite(self.eta) \
                or self.eta < 0:
            raise InputError(contract.ETA.format(self.eta))
        try:
            noise.fidelity_arg(self.fidelity)
        except ValueError as e:
            raise InputError(str(e)) from None
        if not _is_int(self.seed):
            raise InputError(contract.INTEGER.format("seed", repr(self.seed)))
        for name, choices in (("sampler", contract.SAMPLERS), ("schedule", contract.DDIM_SCHEDULES)):
            if getattr(self, name) not in choices:
                raise InputError(contract.ONE_OF.format(name, ", ".join(choices), repr(getattr(self, name))))
        for name, lo in (("latent_tile", 1), ("latent_overlap", 0)):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < lo):
                raise InputError(contract.AT_LEAST.format(name.replace("_", " "), lo, repr(v)))

    def kwargs(self) -> dict:
        """The request as keyword arguments of ``Pipeline.upscale`` / ``Pipeline.generate``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_namespace(cls, args: argparse.Namespace):
        """The request of parsed command-line arguments (flags named as the fields)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


@dataclass(frozen=True, kw_only=True)
class UpscaleRequest(_Sampling):
    """Super-resolve by ``scale`` (output round(s*h) x round(s*w)) or to ``size`` = (W, H)."""
    scale: float | None = None
    size: tuple[int, int] | None = None
    backproject: int = contract.DEFAULT_BACKPROJECT

    def __post_init__(self):
        super().__post_init__()
        if self.scale is not None and self.size is not None:
            raise InputError(contract.SCALE_AND_SIZE)
        if self.scale is None and self.size is None:
            raise InputError(contract.SCALE_OR_SIZE)
        if self.scale is not None and (isinstance(self.scale, bool) or not isinstance(self.scale, numbers.Real)
                                       or not math.isfinite(self.scale) or self.scale <= 0):
            raise InputError(contract.POSITIVE_NUMBER.format("scale", self.scale))
        if self.size is not None:
            _check_size(self.size)
        if not _is_int(self.backproject) or not 0 <= self.backproject <= contract.MAX_BACKPROJECT:
            raise InputError(contract.BACKPROJECT.format(contract.MAX_BACKPROJECT, repr(self.backproject)))


@dataclass(frozen=True, kw_only=True)
class GenerateRequest(_Sampling):
    """Unconditional samples rendered at ``size`` = (W, H): sampled at the output's own scale, or
    with ``zoom`` at the training latent stretched to the size."""
    size: tuple[int, int]
    zoom: bool = False

    def __post_init__(self):
        super().__post_init__()
        _check_size(self.size)
        if not isinstance(self.zoom, bool):
            raise InputError(contract.ONE_OF.format("zoom", "true, false", repr(self.zoom)))
