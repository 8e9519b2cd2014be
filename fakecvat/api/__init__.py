"""One blueprint per CVAT resource. Handlers parse, call the model, serialize in CVAT's shape.

``BLUEPRINTS`` lists the modules whose ``bp`` the app factory registers, in order.
"""
BLUEPRINTS = [
    "fakecvat.api.server",
    "fakecvat.api.auth",
    "fakecvat.api.users",
    "fakecvat.api.tasks",
    "fakecvat.api.taskdata",
    "fakecvat.api.jobs",
    "fakecvat.api.requests",
    "fakecvat.api.projects",
    "fakecvat.api.labels",
    "fakecvat.api.webhooks",
    "fakecvat.api.annotations",
    "fakecvat.api.orgs",
]
