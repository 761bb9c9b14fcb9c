"""Programs beside the runtime library: the benchmarks (``python -m runtime.programs.bench*``)
and ``make demo`` (``python -m runtime.programs.demo``).  They import the library; the library
never imports them, and the wheel leaves them out (pyproject.toml lists its packages)."""
