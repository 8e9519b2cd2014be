"""syncd's CVAT REST client (CVAT 2.x, checked against the v2.52 schema), built on ``requests``.

    from syncd.cvat import CVATClient, CVATError, client_from_env
    with CVATClient("http://localhost:8080", username="u", password="p") as cvat:
        task = cvat.create_task("name", labels=[...], segment_size=10)
        rq = cvat.upload_data(task["id"], files)
        cvat.wait_task_ready(task["id"], rq)

Modules: ``client`` (transport: auth, retries, pagination), ``upload`` (streamed data upload,
TUS), ``resources`` (typed calls), ``env`` (configuration from environment variables),
``errors`` (CVATError).
"""
from .errors import CVATError
from .resources import CVATClient, strip_ids
from .env import client_from_env

__all__ = ["CVATClient", "CVATError", "client_from_env", "strip_ids"]
