"""syncd.toml: valid configs load into typed values; every bad one names the key and reason."""

import re

import pytest

from syncd.config import credentials_from_env, load_config, parse_config
from syncd.errors import ConfigError

# SPEC §3's example, verbatim: its label_schema is a multi-line inline table (TOML 1.1).
SPEC_EXAMPLE = '''
[cvat]
url = "http://127.0.0.1:8080"     # or env CVAT_URL
organization = ""                 # X-Organization
project_name = ""                 # optional: tasks go into this project (created if missing)
poll_interval = 10                # seconds between status polls
webhook = "127.0.0.1:0"           # optional: listen for CVAT webhooks for instant pulls
share_root = ""                   # optional: local path of CVAT's share volume; media below it are
                                  # sent as server_files (no bytes uploaded)

[[rule]]                          # one or more
name = "boxes"                    # run keys are "<name>-<n>"
tag = "requires_annotation"       # trigger tag
done_tag = "annotated"            # replaces the trigger tag once labels are merged
auto_tag = ["incoming/**"]        # new media matching these globs get the trigger tag
label_schema = { ground_truth = { type = "detections", classes = ["person", "vehicle"],
                 attributes = { iscrowd = { type = "radio", values = [true, false], default = false } } } }
# shorthand instead of label_schema: label_field, label_type, classes, attributes, mask_targets
segment_size = 25
task_size = 100                   # most samples per task (videos: always one per task)
batch_window = 5.0                # seconds to gather tagged samples before a task is made
task_assignee = "alice"           # or a list, round robin over tasks
job_assignees = ["bob", "carol"]  # round robin over jobs
job_reviewers = ["dave"]
allow_additions = true            # and allow_deletions, allow_label_edits,
                                  # allow_index_edits, allow_spatial_edits
cleanup = true                    # delete the CVAT task once its labels are merged
'''

FULL = """
[cvat]
url = "http://127.0.0.1:8080/"
organization = "lab"
project_name = "street"
poll_interval = 2.5
webhook = "127.0.0.1:9000"
share_root = "share"
completion = "acceptance"

[[rule]]
name = "boxes"
tag = "requires_annotation"
done_tag = "annotated"
auto_tag = ["incoming/**", "cam*/*.jpg"]
segment_size = 25
task_size = 100
batch_window = 0
task_assignee = ["alice", "zoe"]
job_assignees = ["bob", "carol"]
job_reviewers = "dave"
allow_deletions = false
cleanup = true
[rule.label_schema.ground_truth]
type = "detections"
classes = ["person", { classes = ["car", "bus"], attributes = { make = { type = "text", values = [] } } }]
attributes = { iscrowd = { type = "radio", values = [true, false], default = false } }

[[rule]]
name = "seg_2"
tag = "needs_masks"
label_field = "frames.seg"
label_type = "segmentation"
mask_targets = { "1" = "road", "2" = "sky", "#ff0000" = "car" }
frame_start = 0
frame_step = [1, 2]
frame_stop = { "v/a.mp4" = 100 }
"""

MIN = """
[cvat]
url = "http://cvat.example:8080"
[[rule]]
name = "r"
label_field = "gt"
label_type = "classification"
classes = ["a"]
"""


def write(root, text, mode=0o644):
    path = root / "syncd.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_full_config(tmp_path):
    (tmp_path / "share").mkdir()
    write(tmp_path, FULL)
    cfg = load_config(tmp_path, env={})
    assert cfg.path == tmp_path / "syncd.toml"
    c = cfg.cvat
    assert c.url == "http://127.0.0.1:8080" and c.organization == "lab"
    assert c.project_name == "street" and c.poll_interval == 2.5
    assert c.webhook == ("127.0.0.1", 9000) and c.completion == "acceptance"
    assert c.share_root == (tmp_path / "share").resolve()
    boxes, seg = cfg.rules
    assert boxes.name == "boxes" and boxes.auto_tag == ("incoming/**", "cam*/*.jpg")
    assert (boxes.segment_size, boxes.task_size, boxes.batch_window) == (25, 100, 0.0)
    assert boxes.task_assignee == ["alice", "zoe"] and boxes.job_reviewers == ["dave"]
    assert boxes.allow_deletions is False and boxes.allow_additions is True and boxes.cleanup
    gt = boxes.label_schema["ground_truth"]
    assert gt["type"] == "detections" and gt["classes"][1]["classes"] == ["car", "bus"]
    assert gt["attributes"]["iscrowd"]["values"] == [True, False]
    assert seg.label_field == "frames.seg" and seg.mask_targets["#ff0000"] == "car"
    assert (seg.frame_start, seg.frame_step, seg.frame_stop) == (0, [1, 2], {"v/a.mp4": 100})
    assert seg.tag == "needs_masks" and seg.done_tag == "annotated" and seg.cleanup is False


def test_defaults_and_env_url(tmp_path):
    write(tmp_path, MIN)
    cfg = load_config(tmp_path, env={})
    assert cfg.cvat.url == "http://cvat.example:8080" and cfg.cvat.poll_interval == 10
    assert cfg.cvat.webhook is None and cfg.cvat.share_root is None
    assert cfg.cvat.completion == "completed"
    r = cfg.rules[0]
    assert (r.tag, r.done_tag, r.batch_window, r.segment_size) == (
        "requires_annotation", "annotated", 5.0, None)
    assert load_config(tmp_path, env={"CVAT_URL": "https://other:1"}).cvat.url == "https://other:1"
    no_url = MIN.replace('url = "http://cvat.example:8080"', "")
    assert parse_config(no_url, env={"FIFTYONE_CVAT_URL": "http://fo:8"}).cvat.url == "http://fo:8"
    with pytest.raises(ConfigError, match=r"cvat\.url: missing"):
        parse_config(no_url, env={})


def test_spec_example_is_accepted():
    """SPEC §3's example uses a multi-line inline table (TOML 1.1); it must still load."""
    cfg = parse_config(SPEC_EXAMPLE, env={})
    rule = cfg.rules[0]
    assert rule.label_schema["ground_truth"]["classes"] == ["person", "vehicle"]
    assert rule.job_assignees == ["bob", "carol"] and cfg.cvat.webhook == ("127.0.0.1", 0)


def test_multiline_inline_table_keeps_strings_intact():
    text = MIN + 'label_schema = { gt = { type = "detections",  # comment {\n' \
                 '  classes = ["a # not a comment", "b}"], } }\n'
    rule = parse_config(text, env={}).rules[0]
    assert rule.label_schema == {"gt": {"type": "detections", "classes": ["a # not a comment",
                                                                          "b}"]}}


RULE = '[cvat]\nurl = "http://h:1"\n[[rule]]\nname = "r"\nlabel_field = "gt"\n'

BAD = [
    (RULE + "segment_size = -3",
     "syncd.toml: rule[0].segment_size: must be a positive integer, got -3"),
    (RULE + "segment_size = true", "rule[0].segment_size: must be a positive integer, got true"),
    (RULE + "task_size = 1.5", "rule[0].task_size: must be a positive integer, got 1.5"),
    (RULE + "batch_window = -1", "rule[0].batch_window: must not be negative"),
    (RULE + 'batch_window = "5"', "rule[0].batch_window: must be a number"),
    (RULE + "segmnt_size = 3", "rule[0].segmnt_size: unknown key"),
    (RULE + 'label_type = "boxes"', "rule[0].label_type: unknown label type 'boxes'"),
    (RULE + "classes = 'a'", "rule[0].classes: must be a list"),
    (RULE + "classes = [1]", r"rule[0].classes[0]: must be a string, got 1"),
    (RULE + "job_assignees = [\"\"]", "rule[0].job_assignees[0]: must not be empty"),
    (RULE + "task_assignee = 3", "rule[0].task_assignee: must be a list of strings"),
    (RULE + "allow_additions = 'yes'", "rule[0].allow_additions: must be true or false"),
    (RULE + "cleanup = 1", "rule[0].cleanup: must be true or false, got 1"),
    (RULE + "frame_step = 0", "rule[0].frame_step: must be an integer >= 1, got 0"),
    (RULE + "frame_start = [0, -1]", "rule[0].frame_start[1]: must be an integer >= 0"),
    (RULE + 'mask_targets = { red = "x" }', "rule[0].mask_targets.red: keys must be"),
    (RULE + 'tag = "t"\ndone_tag = "t"', "rule[0].done_tag: must differ"),
    (RULE + "auto_tag = [1]", r"rule[0].auto_tag[0]: must be a string"),
    (RULE + 'label_schema = { gt = { type = "detections", clases = [] } }',
     "rule[0].label_schema.gt.clases: unknown key"),
    (RULE + 'label_schema = { gt = { attributes = { a = { values = "x" } } } }',
     "rule[0].label_schema.gt.attributes.a.values: must be a list"),
    (RULE + "label_schema = {}", "rule[0].label_schema: must name at least one label field"),
    ('[cvat]\nurl = "http://h:1"\n[[rule]]\nlabel_field = "gt"', "rule[0].name: missing"),
    ('[cvat]\nurl = "http://h:1"\n[[rule]]\nname = "a b"\nlabel_field = "gt"',
     "rule[0].name: use letters"),
    ('[cvat]\nurl = "http://h:1"\n[[rule]]\nname = "r"', "rule[0]: needs label_schema"),
    ('[cvat]\nurl = "http://h:1"', "rule: at least one"),
    (RULE + '[[rule]]\nname = "r"\nlabel_field = "x"\ntag = "o"', "rule[1].name: 'r' is already"),
    (RULE + '[[rule]]\nname = "s"\nlabel_field = "x"',
     "rule[1].tag: 'requires_annotation' is already the trigger tag of rule 'r'"),
    (RULE + "[cvat.extra]", "cvat.extra: unknown key"),
    (RULE.replace("http://h:1", "ftp://h"), "cvat.url: must be an http:// or https:// URL"),
    (RULE + "[cvat]", "invalid TOML"),
    ("[[rule]]\nname = \"r\"\n[cvt]\nurl = \"x\"", "cvt: unknown key"),
    (RULE.replace('url = "http://h:1"', 'url = "http://h:1"\npoll_interval = 0'),
     "cvat.poll_interval: must be a positive number, got 0"),
    (RULE.replace('url = "http://h:1"', 'url = "http://h:1"\nwebhook = "nohost"'),
     "cvat.webhook: must be HOST:PORT"),
    (RULE.replace('url = "http://h:1"', 'url = "http://h:1"\nwebhook = "h:70000"'),
     "cvat.webhook: must be HOST:PORT"),
    (RULE.replace('url = "http://h:1"', 'url = "http://h:1"\ncompletion = "done"'),
     "cvat.completion: must be one of completed, acceptance, got 'done'"),
    (RULE.replace('url = "http://h:1"', 'url = "http://h:1"\nshare_root = "/no/such/dir"'),
     "cvat.share_root: not a directory"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_configs_name_key_and_reason(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        parse_config(text, env={})
    assert str(info.value).startswith("syncd.toml")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", [
    RULE.replace('url = "http://h:1"', 'url = "http://h:1"\npassword = "hunter2"'),
    RULE.replace('url = "http://h:1"', 'url = "http://h:1"\ntoken = "abc"'),
    RULE.replace('url = "http://h:1"', 'url = "http://h:1"\nusername = "me"'),
    RULE.replace("http://h:1", "http://me:secret@h:1"),
    'password = "x"\n' + RULE,
    RULE + 'api_key = "x"',
])
def test_credentials_in_file_are_rejected(text):
    with pytest.raises(ConfigError, match="credentials are not allowed in syncd.toml") as info:
        parse_config(text, env={})
    assert "hunter2" not in str(info.value) and "secret" not in str(info.value)


def test_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="no syncd.toml in"):
        load_config(tmp_path, env={})
    path = write(tmp_path, MIN, mode=0o666)
    with pytest.raises(ConfigError, match="world-writable"):
        load_config(tmp_path, env={})
    path.chmod(0o600)
    path.write_bytes(b"\xff\xfe[cvat]")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(tmp_path, env={})


def test_relative_share_root_is_below_root(tmp_path):
    (tmp_path / "s").mkdir()
    write(tmp_path, RULE.replace('url = "http://h:1"', 'url = "http://h:1"\nshare_root = "s"'))
    assert load_config(tmp_path, env={}).cvat.share_root == (tmp_path / "s").resolve()


def test_credentials_from_env():
    assert credentials_from_env({}) == (None, None, None, None)
    env = {"FIFTYONE_CVAT_URL": "http://fo", "FIFTYONE_CVAT_USERNAME": "fo",
           "FIFTYONE_CVAT_PASSWORD": "fopw"}
    assert credentials_from_env(env) == ("http://fo", "fo", "fopw", None)
    env.update(CVAT_URL="http://c", CVAT_USERNAME="u", CVAT_PASSWORD="p", CVAT_TOKEN="t")
    assert credentials_from_env(env) == ("http://c", "u", "p", "t")
