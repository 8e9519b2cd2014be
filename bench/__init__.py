"""syncd/fakecvat benchmarks: ``python -m bench [--quick] [--only NAME ...] [--json PATH]``.

Never part of the test suite. Each family module (upload.py, download.py, fakecvat_api.py,
daemon.py, ...) registers benchmarks with :func:`bench.core.benchmark`; the runner finds every
module in this package that is not framework code. See docs/benchmarks.md.
"""
