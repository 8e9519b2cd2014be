"""syncd: move a dataset directory through CVAT annotation, unattended or one run at a time.

The Python API (see syncd.api): annotate, load_annotations, resume, status, format_status, runs,
rename_run, delete_run, tag. The daemon is ``syncd run ROOT`` (syncd.daemon).
"""
__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: importing syncd (e.g. for syncd.dataset in a subprocess) must not pull in requests.
    from . import api
    if name in ("annotate", "load_annotations", "resume", "status", "format_status", "runs",
                "rename_run", "delete_run", "tag"):
        return getattr(api, name)
    raise AttributeError(name)
