"""Authentication as CVAT does it: login cookies + CSRF, Token, Bearer PAT, Basic, logout."""
import requests


def login(url, user="admin", password="admin"):
    s = requests.Session()
    r = s.post(url + "/api/auth/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    s.headers["X-CSRFToken"] = s.cookies["csrftoken"]
    return s, r.json()["key"]


def test_about_is_anonymous_and_sdk_compatible(fakecvat):
    r = requests.get(fakecvat.url + "/api/server/about")
    assert r.status_code == 200
    about = r.json()
    assert set(about) >= {"name", "description", "version", "logo_url", "subtitle"}
    assert about["version"] == "2.80.0"


def test_login_sets_cookies_and_returns_stable_key(fakecvat):
    s, key = login(fakecvat.url)
    assert {"sessionid", "csrftoken"} <= set(s.cookies.keys())
    assert len(key) <= 40
    _, key2 = login(fakecvat.url)
    assert key == key2  # one DRF token per user until logout
    assert s.get(fakecvat.url + "/api/users/self").json()["username"] == "admin"


def test_bad_credentials_400(fakecvat):
    r = requests.post(fakecvat.url + "/api/auth/login", json={"username": "admin", "password": "nope"})
    assert r.status_code == 400
    assert r.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}


def test_login_by_email(fakecvat):
    r = requests.post(fakecvat.url + "/api/auth/login", json={"email": "admin@example.com", "password": "admin"})
    assert r.status_code == 200


def test_csrf_enforced_on_unsafe_session_requests(fakecvat):
    s, _ = login(fakecvat.url)
    del s.headers["X-CSRFToken"]
    r = s.post(fakecvat.url + "/api/auth/access_tokens", json={"name": "t"})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    s.headers["X-CSRFToken"] = "wrong"
    assert s.post(fakecvat.url + "/api/auth/access_tokens", json={"name": "t"}).status_code == 403
    s.headers["X-CSRFToken"] = s.cookies["csrftoken"]
    assert s.post(fakecvat.url + "/api/auth/access_tokens", json={"name": "t"}).status_code == 201


def test_token_header_and_logout_revokes_it(fakecvat):
    s, key = login(fakecvat.url)
    h = {"Authorization": f"Token {key}"}
    assert requests.get(fakecvat.url + "/api/users/self", headers=h).status_code == 200
    assert s.post(fakecvat.url + "/api/auth/logout").json() == {"detail": "Successfully logged out."}
    r = requests.get(fakecvat.url + "/api/users/self", headers=h)
    assert r.status_code == 401 and r.json() == {"detail": "Invalid token."}


def test_personal_access_token_bearer_and_read_only(fakecvat):
    s, _ = login(fakecvat.url)
    pat = s.post(fakecvat.url + "/api/auth/access_tokens", json={"name": "ci", "read_only": True}).json()
    h = {"Authorization": f"Bearer {pat['value']}"}
    assert requests.get(fakecvat.url + "/api/users/self", headers=h).json()["username"] == "admin"
    assert requests.get(fakecvat.url + "/api/auth/access_tokens/self", headers=h).json()["name"] == "ci"
    r = requests.patch(fakecvat.url + "/api/users/1", headers=h, json={"first_name": "Ada"})
    assert r.status_code == 403 and "read-only" in r.json()["detail"]
    rw = s.post(fakecvat.url + "/api/auth/access_tokens", json={"name": "rw", "read_only": False}).json()
    r = requests.patch(fakecvat.url + "/api/users/1", headers={"Authorization": f"Bearer {rw['value']}"},
                       json={"first_name": "Ada"})
    assert r.status_code == 200 and r.json()["first_name"] == "Ada"
    assert s.delete(fakecvat.url + f"/api/auth/access_tokens/{pat['id']}").status_code == 204
    assert requests.get(fakecvat.url + "/api/users/self", headers=h).status_code == 401


def test_basic_auth(fakecvat):
    assert requests.get(fakecvat.url + "/api/users/self", auth=("user1", "user1-pass")).json()["username"] == "user1"
    r = requests.get(fakecvat.url + "/api/users/self", auth=("user1", "bad"))
    assert r.status_code == 401


def test_anonymous_is_refused_with_www_authenticate(fakecvat):
    r = requests.get(fakecvat.url + "/api/users/self")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Token"


def test_regular_user_sees_only_themselves(fakecvat):
    r = requests.get(fakecvat.url + "/api/users", auth=("user1", "user1-pass")).json()
    assert [u["username"] for u in r["results"]] == ["user1"]
    assert requests.get(fakecvat.url + "/api/users/1", auth=("user1", "user1-pass")).status_code == 403
    admin_view = requests.get(fakecvat.url + "/api/users?search=user", auth=("admin", "admin")).json()
    assert sorted(u["username"] for u in admin_view["results"]) == ["user1", "user2"]


def test_register_then_login(fakecvat):
    r = requests.post(fakecvat.url + "/api/auth/register",
                      json={"username": "newbie", "password1": "p4ss-Word", "password2": "p4ss-Word", "email": "n@x.org"})
    assert r.status_code == 201, r.text
    login(fakecvat.url, "newbie", "p4ss-Word")


def test_unimplemented_endpoint_is_501_naming_the_path(fakecvat):
    r = requests.get(fakecvat.url + "/api/quality/reports", auth=("admin", "admin"))
    assert r.status_code == 501
    assert "/api/quality/reports" in r.json()["detail"]


def test_sdk_logs_in_and_reads_self(fakecvat):
    from cvat_sdk import make_client
    with make_client(fakecvat.url, credentials=("admin", "admin")) as client:
        assert client.users.retrieve_current_user().username == "admin"
        assert {u.username for u in client.users.list()} == {"admin", "user1", "user2"}
