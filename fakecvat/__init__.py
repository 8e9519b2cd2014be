"""fakecvat: an offline reimplementation of the CVAT server's REST API, for tests.

    from fakecvat import FakeCVAT
    with FakeCVAT() as cvat:          # admin:admin on a free loopback port
        requests.get(cvat.url + "/api/server/about")
"""
from .app import create_app
from .server import FakeCVAT

__all__ = ["FakeCVAT", "create_app"]
