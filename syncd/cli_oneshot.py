"""The one-shot subcommands of ``syncd`` (SPEC §4): annotate, load, status, runs, rename-run,
delete-run, tag. Thin: parse, call syncd.api, print. Each handler returns an exit status;
errors are turned into one line on stderr by the caller (syncd.cli)."""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

from . import api
from .errors import SyncdError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("annotate", help="send samples to CVAT (like FiftyOne's annotate())")
    p.add_argument("root")
    p.add_argument("key", help="the run key (anno_key)")
    p.add_argument("paths", nargs="*", help="media paths (relative to ROOT); or use --tag")
    p.add_argument("--tag", help="send every sample carrying this tag")
    p.add_argument("--schema", help="JSON file with a label_schema {field: {type, classes, attributes, ...}}")
    p.add_argument("--field", dest="label_field")
    p.add_argument("--type", dest="label_type")
    p.add_argument("--classes", type=lambda s: [c for c in s.split(",") if c], help="comma-separated")
    p.add_argument("--mask-targets", help='JSON object, e.g. {"1": "road"}')
    p.add_argument("--segment-size", type=int)
    p.add_argument("--task-size", type=int)
    p.add_argument("--task-assignee", nargs="+")
    p.add_argument("--job-assignees", nargs="+")
    p.add_argument("--job-reviewers", nargs="+")
    p.add_argument("--project-name")
    p.add_argument("--project-id", type=int)
    p.add_argument("--organization")
    p.add_argument("--image-quality", type=int, default=75)
    p.add_argument("--url", help="CVAT url (default: env CVAT_URL)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted upload of KEY")
    p.add_argument("--open", action="store_true", help="open the CVAT editor when done")
    for flag in ("additions", "deletions", "label-edits", "index-edits", "spatial-edits"):
        p.add_argument(f"--no-{flag}", action="store_true", help=f"set allow_{flag.replace('-', '_')}=False")
    p.set_defaults(handler=cmd_annotate)

    p = sub.add_parser("load", help="download and merge a run's labels (like load_annotations())")
    p.add_argument("root")
    p.add_argument("key")
    p.add_argument("--cleanup", action="store_true", help="delete the CVAT tasks afterwards")
    p.add_argument("--unexpected", choices=("keep", "ignore"), default="keep")
    p.add_argument("--dest-field")
    p.add_argument("--url")
    p.set_defaults(handler=cmd_load)

    p = sub.add_parser("status", help="every run, its tasks and jobs (like print_status())")
    p.add_argument("root")
    p.add_argument("key", nargs="?")
    p.add_argument("--json", action="store_true")
    p.add_argument("--url")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("runs", help="list the runs of a directory")
    p.add_argument("root")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_runs)

    p = sub.add_parser("rename-run", help="rename a run")
    p.add_argument("root")
    p.add_argument("key")
    p.add_argument("new_key")
    p.set_defaults(handler=cmd_rename)

    p = sub.add_parser("delete-run", help="forget a run (with --cleanup: delete its CVAT tasks)")
    p.add_argument("root")
    p.add_argument("key")
    p.add_argument("--cleanup", action="store_true")
    p.add_argument("--url")
    p.set_defaults(handler=cmd_delete)

    p = sub.add_parser("tag", help="add or remove a tag on samples")
    p.add_argument("root")
    p.add_argument("paths", nargs="+")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--add")
    g.add_argument("--remove")
    p.set_defaults(handler=cmd_tag)


@contextmanager
def _progress(label: str, enabled: bool):
    """A progress bar on stderr for long work (rich), or nothing when stderr is not a TTY."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
    # on stderr: rich's default console is stdout, which scripts read (`syncd ... | jq`)
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=None)

        def update(done, total=None):
            bar.update(task, completed=done, total=total)
        yield update


def cmd_annotate(args) -> int:
    if args.resume:
        with _progress("uploading", True) as prog:
            result = api.resume(args.root, args.key, url=args.url, launch_editor=args.open, progress=prog)
    else:
        options = {k: getattr(args, k) for k in ("label_field", "label_type", "classes", "segment_size",
                                                   "task_size", "task_assignee", "job_assignees", "job_reviewers",
                                                   "project_name", "project_id", "organization", "image_quality")
                   if getattr(args, k) is not None}
        if args.schema:
            options["label_schema"] = _json_arg("--schema", args.schema, from_file=True)
        if args.mask_targets:
            targets = _json_arg("--mask-targets", args.mask_targets)
            try:
                options["mask_targets"] = {int(k): v for k, v in targets.items()}
            except (AttributeError, TypeError, ValueError):
                raise SyncdError(f"--mask-targets: expected a JSON object of integer keys, e.g. "
                                 f'{{"1": "road"}}, got {args.mask_targets!r}') from None
        for flag in ("additions", "deletions", "label_edits", "index_edits", "spatial_edits"):
            if getattr(args, f"no_{flag}"):
                options[f"allow_{flag}"] = False
        with _progress("uploading", True) as prog:
            result = api.annotate(args.root, args.key, args.paths or None, tag=args.tag, url=args.url,
                                  launch_editor=args.open, progress=prog, **options)
    print(f"run '{result['key']}': {len(result['tasks'])} task(s) {result['tasks']}; editor: {result['editor_url']}")
    for rel, why in result["skipped"].items():
        print(f"skipped {rel}: {why}", file=sys.stderr)
    return 0


def _json_arg(flag: str, value: str, from_file: bool = False):
    """A JSON option (or the JSON file it names), or a one-line SyncdError saying what is wrong."""
    text = value
    if from_file:
        try:
            text = Path(value).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SyncdError(f"{flag} {value}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise SyncdError(f"{flag} {value if from_file else repr(value)}: not valid JSON ({e})") from None


def cmd_load(args) -> int:
    summary = api.load_annotations(args.root, args.key, cleanup=args.cleanup, unexpected=args.unexpected,
                                   dest_field=args.dest_field, url=args.url)
    print(f"run '{args.key}': merged {summary['samples']} sample(s), {summary['labels']} label(s)")
    for rel, why in {**summary["flagged"], **summary["skipped"]}.items():
        print(f"not merged {rel}: {why}", file=sys.stderr)
    return 0


def cmd_status(args) -> int:
    report = api.status(args.root, args.key, url=args.url)
    print(json.dumps(report, indent=2) if args.json else api.format_status(report))
    return 0


def cmd_runs(args) -> int:
    rows = api.list_runs(args.root)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['key']}\t{r['status']}\t{r['created']}\ttasks={r['tasks']}\tsamples={r['samples']}")
        if not rows:
            print("no runs")
    return 0


def cmd_rename(args) -> int:
    api.rename_run(args.root, args.key, args.new_key)
    return 0


def cmd_delete(args) -> int:
    api.delete_run(args.root, args.key, cleanup=args.cleanup, url=args.url)
    return 0


def cmd_tag(args) -> int:
    n = api.tag(args.root, args.paths, add=[args.add] if args.add else [], remove=[args.remove] if args.remove else [])
    print(f"{n} sample(s) updated")
    return 0
