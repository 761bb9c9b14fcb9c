"""Errors the user can act on.

Everything the runtime raises on purpose derives from ``LdmindError``; the CLI prints
``str(error)`` as one line and exits with status 2.  Any other exception is a bug (the CLI
reports it as an internal error, status 1).  Messages name the offending file or value
and, where there is one, the fix.
"""
from __future__ import annotations


class LdmindError(Exception):
    """Base class: a problem with the input, the engines or the environment, not a bug."""


class InputError(LdmindError, ValueError):
    """A bad image, size, scale or option."""


class EngineError(LdmindError):
    """A missing or invalid engine directory, manifest, graph file or backend."""


class OutOfMemory(EngineError):
    """A graph or its session could not get memory: the request or the machine is too small,
    not the backend (so when the last backend ``auto`` tries fails this way, that is what it
    reports, rather than "no backend can run these graphs")."""


class NumericalError(LdmindError):
    """A graph produced NaN or infinity: an error, never a black image."""
