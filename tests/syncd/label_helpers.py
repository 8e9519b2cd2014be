"""Shared helpers of the label-conversion tests: what a CVAT server answers for the label specs
syncd sends, and one sample's trip export -> id resolution -> CVAT -> import, with no server."""
from __future__ import annotations

from typing import NamedTuple

from syncd.labels import export_sample, import_annotations, resolve_ids
from syncd.schema import cvat_labels


def server_labels(schema) -> list[dict]:
    """What a CVAT server returns for ``cvat_labels(schema)``: ids on labels and attributes."""
    out, next_id = [], 1000
    for i, lab in enumerate(cvat_labels(schema)):
        attrs = []
        for a in lab["attributes"]:
            next_id += 1
            attrs.append({**a, "id": next_id})
        out.append({"id": i + 1, "name": lab["name"], "type": "any", "attributes": attrs})
    return out


class Trip(NamedTuple):
    items: dict   # what export_sample produced
    data: dict    # the LabeledData CVAT holds (ids resolved, objects numbered by the server)
    sent: dict    # label ids sent, per field
    got: dict     # the sample's fields as imported back


def through_cvat(sample, schema, w=640, h=480, *, root=None, unexpected="keep", edit=None) -> Trip:
    """Export ``sample`` as frame 0, let the "server" number the objects (``edit(data, labels)``
    may change them as an annotator would), and import them back as sample "s"."""
    items, sent = export_sample(sample, 0, schema, w, h, root)
    labels = server_labels(schema)
    data = resolve_ids(items, labels)
    for n, item in enumerate(data["tags"] + data["shapes"]):
        item["id"] = n + 1
    if edit:
        edit(data, labels)
    got = import_annotations(data, labels, {0: {"sample": "s", "width": w, "height": h}}, schema, unexpected)
    return Trip(items, data, sent, got["s"])
