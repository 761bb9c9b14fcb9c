"""What the CPU is and can do, read once from /proc/cpuinfo: the model name, the feature flags,
and whether it runs bf16 natively.  Every timing is quoted with these (docs/BENCHMARKS.md), and
the runtime's ``auto`` backend offers bf16 only where the CPU has it (runtime/backends/choice.py).
"""
from __future__ import annotations

import os
import platform

CPUINFO = "/proc/cpuinfo"
# another file read in its place (a CPU simulated in tests; the C++ runtime reads it too:
# runtime/cpp/src/choice.cpp)
CPUINFO_ENV = "LDMIND_CPUINFO"
# flags meaning bf16 matrix arithmetic in hardware (AVX-512 BF16 dot products, AMX tiles);
# without them a bf16 request is emulated in fp32 or refused, never faster
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpuinfo_path() -> str:
    """``$LDMIND_CPUINFO``, else /proc/cpuinfo."""
    return os.environ.get(CPUINFO_ENV) or CPUINFO


def _field(name: str, path: str | None = None) -> str | None:
    """The value of the first ``name :`` line of /proc/cpuinfo (None where absent or unreadable)."""
    try:
        with open(path or cpuinfo_path()) as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def model_name(path: str | None = None) -> str:
    """The CPU's model name, or "unknown"."""
    return _field("model name", path) or "unknown"


def flag_list(path: str | None = None) -> list[str]:
    """The CPU's feature flags in /proc/cpuinfo's order (empty where it is absent)."""
    return (_field("flags", path) or "").split()


def native_bf16(flags: list[str] | set[str] | None = None) -> bool:
    """Whether the CPU computes bf16 in hardware (any of ``NATIVE_BF16_FLAGS``)."""
    have = set(flag_list() if flags is None else flags)
    return any(f in have for f in NATIVE_BF16_FLAGS)


def summary(flags: list[str] | None = None) -> str:
    """'x86_64, 2 cores, AVX2 AVX-512 BF16 VNNI AMX': the machine every figure is quoted with."""
    have = set(flag_list() if flags is None else flags)
    names = [("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "BF16"), ("avx512_vnni", "VNNI"),
             ("amx_bf16", "AMX")]
    return f"{platform.machine()}, {os.cpu_count()} cores, " + (" ".join(n for f, n in names if f in have) or "no AVX2")
