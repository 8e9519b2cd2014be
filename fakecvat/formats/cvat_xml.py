"""CVAT XML 1.1: the vocabulary shared by export (:mod:`.cvat_xml_export`, "CVAT for images 1.1" /
"CVAT for video 1.1") and import (:mod:`.cvat_xml_import`, "CVAT 1.1"): the element written for
each shape type and the attribute names of a cuboid's 16 coordinates."""
from __future__ import annotations

TAGS = {"rectangle": "box", "ellipse": "ellipse", "polygon": "polygon", "polyline": "polyline",
        "points": "points", "mask": "mask", "cuboid": "cuboid", "skeleton": "skeleton"}
SHAPE_OF_TAG = {v: k for k, v in TAGS.items()}
CUBOID_KEYS = ("xtl1", "ytl1", "xbl1", "ybl1", "xtr1", "ytr1", "xbr1", "ybr1",
               "xtl2", "ytl2", "xbl2", "ybl2", "xtr2", "ytr2", "xbr2", "ybr2")

