"""fakecvat: an offline reimplementation of the CVAT server's REST API, for tests.

    from fakecvat import FakeCVAT
    with FakeCVAT() as cvat:          # admin:admin on a free loopback port
        requests.get(cvat.url + "/api/server/about")

    from fakecvat import FakeCVATProcess   # the same, as a ``fakecvat serve`` subprocess
    with FakeCVATProcess() as cvat:
        cvat.session().get(cvat.url + "/api/tasks")
"""
from .app import create_app
from .process import FakeCVATProcess
from .server import FakeCVAT

__all__ = ["FakeCVAT", "FakeCVATProcess", "create_app"]
