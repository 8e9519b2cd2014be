"""Labels and their attribute specs (cvat-api.md §5): the public face of the modules that do the
work, so handlers and the task/project models need one name.

- :mod:`.label_queries`: reading one parent's labels and sublabels; CVAT's Label serialization
- :mod:`.label_checks`: validation of label and attribute specs, before anything is written
- :mod:`.label_writes`: creating and deleting labels (colours, defaults, skeletons, cascades)
- :mod:`.label_patch`: CVAT's PATCH semantics (parent ``labels`` PATCH and ``PATCH /labels/{id}``)
"""
from __future__ import annotations

from .label_checks import INPUT_TYPES, LABEL_TYPES, validate_new_labels
from .label_patch import patch_labels, update_label
from .label_queries import (all_labels_of_task, attribute_spec, find_attribute, get_label, labels_of_task,
                            serialize_attribute, serialize_label, sublabels_of, top_level_labels)
from .label_writes import PALETTE, create_labels, delete_label, delete_labels_of, touch_parent

__all__ = ["INPUT_TYPES", "LABEL_TYPES", "PALETTE", "all_labels_of_task", "attribute_spec", "create_labels",
           "delete_label", "delete_labels_of", "find_attribute", "get_label", "labels_of_task", "patch_labels",
           "serialize_attribute", "serialize_label", "sublabels_of", "top_level_labels", "touch_parent",
           "update_label", "validate_new_labels"]
