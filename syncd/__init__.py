"""syncd: move a dataset directory through CVAT annotation, unattended or one run at a time.

The Python API (see syncd.api): annotate, load_annotations, resume, status, format_status,
list_runs, rename_run, delete_run, tag (``syncd.runs`` is the run-store module, not the
listing). The daemon is ``syncd run ROOT`` (syncd.daemon).
"""
__version__ = "0.1.0"


_API = ("annotate", "load_annotations", "resume", "status", "format_status", "list_runs",
        "rename_run", "delete_run", "tag")


def __getattr__(name):
    # Lazy: importing syncd (e.g. for syncd.dataset in a subprocess) must not pull in requests,
    # and must not import syncd.api while a submodule is being looked up.
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'syncd' has no attribute {name!r}")
