"""Pagination exactly as CVAT: 10 per page, absolute next, page_size=all, 404 past the end;
and persistence: state under --data-dir survives a restart."""
import requests

from fakecvat import FakeCVAT
from fakecvat.store import CorruptStateError, Store


def test_pagination_shape(fakecvat):
    for i in range(12):
        requests.post(fakecvat.url + "/_fakecvat/users", json={"username": f"u{i:02d}", "password": "x"})
    auth = ("admin", "admin")
    page1 = requests.get(fakecvat.url + "/api/users", auth=auth).json()
    assert page1["count"] == 15 and len(page1["results"]) == 10
    assert page1["next"].startswith(fakecvat.url + "/api/users?") and page1["previous"] is None
    assert [u["id"] for u in page1["results"]] == sorted((u["id"] for u in page1["results"]), reverse=True)
    page2 = requests.get(page1["next"], auth=auth).json()
    assert len(page2["results"]) == 5 and page2["next"] is None and page2["previous"]
    assert requests.get(fakecvat.url + "/api/users?page=3", auth=auth).status_code == 404
    assert len(requests.get(fakecvat.url + "/api/users?page_size=all", auth=auth).json()["results"]) == 15
    asc = requests.get(fakecvat.url + "/api/users?sort=id&page_size=3", auth=auth).json()
    assert [u["id"] for u in asc["results"]] == [1, 2, 3]


def test_state_survives_restart(tmp_path):
    with FakeCVAT(data_dir=tmp_path) as a:
        requests.post(a.url + "/_fakecvat/users", json={"username": "kept", "password": "pw"})
    with FakeCVAT(data_dir=tmp_path) as b:
        assert requests.get(b.url + "/api/users/self", auth=("kept", "pw")).status_code == 200


def test_torn_last_journal_line_is_dropped_but_damage_is_reported(tmp_path):
    s = Store(tmp_path)
    s.insert("things", {"x": 1})
    s.close()
    with open(tmp_path / "journal.jsonl", "a") as f:
        f.write('{"op": "put", "tab')  # what kill -9 mid-write leaves
    s2 = Store(tmp_path)
    assert [d["x"] for d in s2.all("things")] == [1]
    s2.close()
    (tmp_path / "state.json").write_text("{not json")
    try:
        Store(tmp_path)
    except CorruptStateError as e:
        assert "state.json" in str(e)
    else:
        raise AssertionError("corrupt state must be reported")
