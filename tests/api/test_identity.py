"""Auth modes over HTTP (falcon.testing): the built-in Keystone v3 subset (tokens, expiry, revocation,
401s, forged tokens, tenant contexts), keystonemiddleware's auth_token (its fixture), noauth as before."""
from __future__ import annotations

import hashlib
import threading

import falcon.testing
import pytest

from controller import config, serve
from topology.api.app import create_app
from topology.api.auth import BuiltinAuth, KeystoneAuth, NoAuth
from topology.model.context import Context, roles_context
from topology.model.identity import Identity, NotBootstrapped
from topology.model.service import Service
from topology.store import TOKEN, USER
from topology.store.backends import open_store
from tests.unit.test_store_etcd import EtcdServer, needs_etcd

ADMIN_PW = "admin-secret"
NET = "/v2.0/networks"
TOKENS = "/identity/v3/auth/tokens"


class Clock:
    """Injected time: tokens expire without sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def password_auth(user: str, password: str, project: str | None = None) -> dict:
    auth: dict = {"identity": {"methods": ["password"], "password": {
        "user": {"name": user, "domain": {"name": "Default"}, "password": password}}}}
    if project is not None:
        auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    return {"auth": auth}


class Cloud:
    """One store, one built-in identity, the Neutron app behind BuiltinAuth."""

    def __init__(self, store_url: str = "memory://", api_token: str | None = None, store=None) -> None:
        self.store = store or open_store(store_url)
        self.svc = Service(self.store)
        self.clock = Clock()
        self.identity = Identity(self.store, token_ttl=3600, clock=self.clock, bcrypt_rounds=4)
        self.identity.bootstrap(ADMIN_PW, self.svc.settings.default_project_id)
        auth = BuiltinAuth(self.identity, self.svc.settings.default_project_id, api_token=api_token)
        self.client = falcon.testing.TestClient(auth.wsgi(create_app(self.svc, auth=auth)))

    def call(self, method: str, path: str, token: str | None = None, body=None, status: int | None = None,
             headers: dict | None = None, **kw):
        h = dict(headers or {})
        if token is not None:
            h["X-Auth-Token"] = token
        resp = self.client.simulate_request(method, path, json=body, headers=h, **kw)
        if status is not None:
            assert resp.status_code == status, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp

    def token(self, user: str, password: str, project: str | None = None) -> str:
        resp = self.call("POST", TOKENS, body=password_auth(user, password, project), status=201)
        return resp.headers["X-Subject-Token"]

    def admin_token(self) -> str:
        return self.token("admin", ADMIN_PW, "admin")

    def tenant(self, name: str, admin: str) -> dict:
        """Project + user `name` with the member role there, as `openstack` would make them."""
        project = self.call("POST", "/identity/v3/projects", admin, {"project": {"name": name}},
                            status=201).json["project"]
        user = self.call("POST", "/identity/v3/users", admin, {"user": {
            "name": name, "password": f"{name}-pw", "default_project_id": project["id"]}}, status=201).json["user"]
        member = self.call("GET", "/identity/v3/roles?name=member", admin, status=200).json["roles"][0]
        self.call("PUT", f"/identity/v3/projects/{project['id']}/users/{user['id']}/roles/{member['id']}", admin,
                  status=204)
        return {"project": project, "user": user, "role": member}


@pytest.fixture()
def cloud() -> Cloud:
    return Cloud()


def _keystone_401(resp, message: str = "The request you have made requires authentication.") -> None:
    assert resp.status_code == 401, resp.text
    assert resp.json == {"error": {"code": 401, "title": "Unauthorized", "message": message}}
    assert resp.headers["WWW-Authenticate"].startswith('Keystone uri="')


def _neutron_401(resp) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.json["NeutronError"]["type"] == "Unauthorized"
    assert resp.headers["WWW-Authenticate"] == 'Keystone uri="http://falconframework.org/identity"'


# ---- discovery and token issue ------------------------------------------------------------------
def test_version_discovery_is_open(cloud):
    root = cloud.call("GET", "/identity", status=300).json
    assert root["versions"]["values"][0]["id"].startswith("v3")
    v3 = cloud.call("GET", "/identity/v3", status=200).json["version"]
    assert v3["status"] == "stable" and v3["links"][0]["href"].endswith("/identity/v3/")
    assert cloud.call("GET", "/", status=200).json["versions"][0]["id"] == "v2.0"   # Neutron's stays open


def test_password_token_project_scoped_with_catalog_and_expiry(cloud):
    resp = cloud.call("POST", TOKENS, body=password_auth("admin", ADMIN_PW, "admin"), status=201)
    token = resp.headers["X-Subject-Token"]
    body = resp.json["token"]
    assert body["methods"] == ["password"] and body["user"]["name"] == "admin"
    assert body["project"] == {"id": cloud.svc.settings.default_project_id, "name": "admin",
                               "domain": {"id": "default", "name": "Default"}}
    assert {r["name"] for r in body["roles"]} == {"admin", "member", "reader"}   # implied roles
    assert body["issued_at"] == "2027-01-15T08:00:00.000000Z" and body["expires_at"] == "2027-01-15T09:00:00.000000Z"
    network = next(s for s in body["catalog"] if s["type"] == "network")
    assert {e["url"] for e in network["endpoints"]} == {"http://falconframework.org"}
    assert {e["interface"] for e in network["endpoints"]} == {"public", "internal", "admin"}
    identity = next(s for s in body["catalog"] if s["type"] == "identity")
    assert identity["endpoints"][0]["url"] == "http://falconframework.org/identity/v3"
    # tokens are random: a second issue gives another one, both valid
    other = cloud.admin_token()
    assert other != token and len(token) >= 40
    for t in (token, other):
        cloud.call("GET", NET, t, status=200)


def test_token_store_holds_only_digests_and_bcrypt_hashes(cloud):
    token = cloud.admin_token()
    records = cloud.store.list(TOKEN)
    assert [r["id"] for r in records] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in repr(records)
    admin = next(u for u in cloud.store.list(USER) if u["name"] == "admin")
    assert admin["_password"].startswith("$2b$") and ADMIN_PW not in repr(admin)


def test_unscoped_request_gets_default_project_and_token_rescope(cloud):
    admin = cloud.admin_token()
    alice = cloud.tenant("alice", admin)
    # no scope: Keystone scopes to the user's default project
    body = cloud.call("POST", TOKENS, body=password_auth("alice", "alice-pw"), status=201).json["token"]
    assert body["project"]["id"] == alice["project"]["id"] and [r["name"] for r in body["roles"]] == \
        ["member", "reader"]
    # a user without default project gets an unscoped token (no catalog): the network API refuses it
    cloud.call("POST", "/identity/v3/users", admin, {"user": {"name": "loner", "password": "pw"}}, status=201)
    resp = cloud.call("POST", TOKENS, body=password_auth("loner", "pw"), status=201)
    assert "project" not in resp.json["token"] and "catalog" not in resp.json["token"]
    unscoped = resp.headers["X-Subject-Token"]
    _neutron_401(cloud.call("GET", NET, unscoped))
    # token method: the same user, rescoped; never outlives the original
    cloud.clock.now += 600
    rescope = {"auth": {"identity": {"methods": ["token"], "token": {"id": unscoped}},
                        "scope": {"project": {"id": alice["project"]["id"]}}}}
    loner = resp.json["token"]["user"]["id"]
    _keystone_401(cloud.call("POST", TOKENS, body=rescope),      # loner has no role in alice
                  f"User {loner} has no access to project {alice['project']['id']}.")
    at = cloud.token("alice", "alice-pw", "alice")
    again = {"auth": {"identity": {"methods": ["token"], "token": {"id": at}},
                      "scope": {"project": {"name": "alice", "domain": {"name": "Default"}}}}}
    resp = cloud.call("POST", TOKENS, body=again, status=201)
    assert resp.json["token"]["methods"] == ["token"]
    assert resp.json["token"]["expires_at"] == cloud.call("GET", TOKENS, admin, headers={
        "X-Subject-Token": at}, status=200).json["token"]["expires_at"]


@pytest.mark.parametrize("user,password,project", [
    ("admin", "wrong", "admin"),            # bad password
    ("nobody", ADMIN_PW, "admin"),          # unknown user: the same answer (no user enumeration)
    ("admin", ADMIN_PW, "no-such-project"),
])
def test_bad_credentials_are_401_with_keystone_body(cloud, user, password, project):
    _keystone_401(cloud.call("POST", TOKENS, body=password_auth(user, password, project)))


@pytest.mark.parametrize("body", [
    {}, {"auth": {}}, {"auth": {"identity": {"methods": ["password"]}}},
    {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin"}}}}},
    {"auth": {"identity": {"methods": ["password"], "password": {"user": {"password": "x"}}}}},
])
def test_malformed_token_requests_are_400(cloud, body):
    resp = cloud.call("POST", TOKENS, body=body, status=400)
    assert resp.json["error"]["code"] == 400 and resp.json["error"]["title"] == "Bad Request"


def test_unsupported_method_and_foreign_domain_are_401(cloud):
    _keystone_401(cloud.call("POST", TOKENS, body={"auth": {"identity": {"methods": ["totp"], "totp": {}}}}),
                  "Unsupported authentication method(s): totp; supported: password, token.")
    body = password_auth("admin", ADMIN_PW, "admin")
    body["auth"]["identity"]["password"]["user"]["domain"] = {"name": "Other"}
    _keystone_401(cloud.call("POST", TOKENS, body=body))


# ---- 401s on the network API ----------------------------------------------------------------------
def test_no_token_forged_token_expired_token_get_401(cloud):
    _neutron_401(cloud.call("GET", NET))
    _neutron_401(cloud.call("GET", NET, "forged-token"))
    _neutron_401(cloud.call("GET", NET, "gAAAAABforgedfernetlooking" * 4))
    _neutron_401(cloud.call("POST", NET, "forged-token", {"network": {"name": "x"}}))
    assert cloud.svc.list("network", cloud.svc.admin_context()) == []              # nothing changed
    token = cloud.admin_token()
    cloud.call("GET", NET, token, status=200)
    cloud.clock.now += 3599
    cloud.call("GET", NET, token, status=200)
    cloud.clock.now += 1
    _neutron_401(cloud.call("GET", NET, token))
    _keystone_401(cloud.call("GET", "/identity/v3/projects", token))


def test_client_identity_headers_are_ignored(cloud):
    admin = cloud.admin_token()
    alice, bob = cloud.tenant("alice", admin), cloud.tenant("bob", admin)
    at, bt = cloud.token("alice", "alice-pw", "alice"), cloud.token("bob", "bob-pw", "bob")
    net = cloud.call("POST", NET, at, {"network": {"name": "alice-net"}}, status=201).json["network"]
    assert net["project_id"] == alice["project"]["id"]
    # bob claiming alice's project or admin by header changes nothing
    forged = {"X-Project-Id": alice["project"]["id"], "X-Roles": "admin", "X-Tenant-Id": alice["project"]["id"]}
    assert cloud.call("GET", NET, bt, headers=forged, status=200).json["networks"] == []
    cloud.call("GET", f"{NET}/{net['id']}", bt, headers=forged, status=404)
    made = cloud.call("POST", NET, bt, {"network": {"name": "b"}}, headers=forged, status=201).json["network"]
    assert made["project_id"] == bob["project"]["id"]
    # and without any token the headers give nothing
    _neutron_401(cloud.call("GET", NET, headers=forged))


def test_tenants_see_only_their_own(cloud):
    admin = cloud.admin_token()
    alice, bob = cloud.tenant("alice", admin), cloud.tenant("bob", admin)
    at, bt = cloud.token("alice", "alice-pw", "alice"), cloud.token("bob", "bob-pw", "bob")
    anet = cloud.call("POST", NET, at, {"network": {"name": "a"}}, status=201).json["network"]
    bnet = cloud.call("POST", NET, bt, {"network": {"name": "b"}}, status=201).json["network"]
    aport = cloud.call("POST", "/v2.0/ports", at, {"port": {"network_id": anet["id"]}}, status=201).json["port"]
    assert [n["id"] for n in cloud.call("GET", NET, at, status=200).json["networks"]] == [anet["id"]]
    assert [n["id"] for n in cloud.call("GET", NET, bt, status=200).json["networks"]] == [bnet["id"]]
    assert [p["id"] for p in cloud.call("GET", "/v2.0/ports", bt, status=200).json["ports"]] == []
    assert aport["id"] in {p["id"] for p in cloud.call("GET", "/v2.0/ports", at, status=200).json["ports"]}
    assert cloud.call("GET", f"{NET}/{anet['id']}", bt).json["NeutronError"]["type"] == "NetworkNotFound"
    cloud.call("GET", f"/v2.0/ports/{aport['id']}", bt, status=404)
    cloud.call("DELETE", f"{NET}/{anet['id']}", bt, status=404)
    cloud.call("PUT", f"{NET}/{anet['id']}", bt, {"network": {"name": "x"}}, status=404)
    # a tenant may not create in another project; admin sees both
    cloud.call("POST", NET, bt, {"network": {"name": "c", "project_id": alice["project"]["id"]}}, status=403)
    assert {anet["id"], bnet["id"]} <= {n["id"] for n in cloud.call("GET", NET, admin, status=200).json["networks"]}
    assert bob["project"]["id"] != alice["project"]["id"]


# ---- validation and revocation --------------------------------------------------------------------
def test_validate_and_revoke(cloud):
    admin = cloud.admin_token()
    cloud.tenant("alice", admin)
    at = cloud.token("alice", "alice-pw", "alice")
    other = cloud.token("alice", "alice-pw", "alice")
    shown = cloud.call("GET", TOKENS, admin, headers={"X-Subject-Token": at}, status=200)
    assert shown.headers["X-Subject-Token"] == at and shown.json["token"]["user"]["name"] == "alice"
    cloud.call("HEAD", TOKENS, at, headers={"X-Subject-Token": at}, status=200)         # own token
    cloud.call("GET", TOKENS, at, headers={"X-Subject-Token": admin}, status=403)        # not another's
    cloud.call("GET", TOKENS, admin, headers={"X-Subject-Token": "forged"}, status=404)
    _keystone_401(cloud.call("GET", TOKENS, "forged", headers={"X-Subject-Token": at}))
    cloud.call("DELETE", TOKENS, at, headers={"X-Subject-Token": at}, status=204)
    _neutron_401(cloud.call("GET", NET, at))
    cloud.call("HEAD", TOKENS, admin, headers={"X-Subject-Token": at}, status=404)
    cloud.call("DELETE", TOKENS, admin, headers={"X-Subject-Token": at}, status=404)
    cloud.call("GET", NET, other, status=200)                                           # only that one


def test_role_removal_user_disable_project_delete_take_effect(cloud):
    admin = cloud.admin_token()
    alice = cloud.tenant("alice", admin)
    grant = f"/identity/v3/projects/{alice['project']['id']}/users/{alice['user']['id']}/roles/{alice['role']['id']}"
    at = cloud.token("alice", "alice-pw", "alice")
    cloud.call("HEAD", grant, admin, status=204)
    cloud.call("DELETE", grant, admin, status=204)
    cloud.call("HEAD", grant, admin, status=404)
    _neutron_401(cloud.call("GET", NET, at))
    _keystone_401(cloud.call("POST", TOKENS, body=password_auth("alice", "alice-pw", "alice")),
                  f"User {alice['user']['id']} has no access to project {alice['project']['id']}.")
    cloud.call("PUT", grant, admin, status=204)
    at = cloud.token("alice", "alice-pw", "alice")
    cloud.call("PATCH", f"/identity/v3/users/{alice['user']['id']}", admin, {"user": {"enabled": False}},
               status=200)
    _neutron_401(cloud.call("GET", NET, at))
    cloud.call("PATCH", f"/identity/v3/users/{alice['user']['id']}", admin, {"user": {"enabled": True}},
               status=200)
    cloud.call("GET", NET, at, status=200)
    # a new password revokes the user's tokens
    cloud.call("PATCH", f"/identity/v3/users/{alice['user']['id']}", admin, {"user": {"password": "new-pw"}},
               status=200)
    _neutron_401(cloud.call("GET", NET, at))
    at = cloud.token("alice", "new-pw", "alice")
    cloud.call("DELETE", f"/identity/v3/projects/{alice['project']['id']}", admin, status=204)
    _neutron_401(cloud.call("GET", NET, at))


def test_identity_admin_only_with_keystone_errors(cloud):
    admin = cloud.admin_token()
    alice = cloud.tenant("alice", admin)
    at = cloud.token("alice", "alice-pw", "alice")
    admin_id = cloud.call("GET", "/identity/v3/users?name=admin", admin).json["users"][0]["id"]
    for method, path, body in (("GET", "/identity/v3/projects", None), ("GET", "/identity/v3/users", None),
                               ("POST", "/identity/v3/projects", {"project": {"name": "x"}}),
                               ("POST", "/identity/v3/users", {"user": {"name": "x"}}),
                               ("POST", "/identity/v3/roles", {"role": {"name": "x"}}),
                               ("PUT", f"/identity/v3/projects/{alice['project']['id']}/users/"
                                       f"{alice['user']['id']}/roles/{alice['role']['id']}", None),
                               ("GET", f"/identity/v3/users/{admin_id}", None)):
        resp = cloud.call(method, path, at, body)
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json["error"]["title"] == "Forbidden"
    _keystone_401(cloud.call("GET", "/identity/v3/projects"))
    # a user may read themselves, their project, and the projects they can scope to
    cloud.call("GET", f"/identity/v3/users/{alice['user']['id']}", at, status=200)
    cloud.call("GET", f"/identity/v3/projects/{alice['project']['id']}", at, status=200)
    mine = cloud.call("GET", "/identity/v3/auth/projects", at, status=200).json["projects"]
    assert [p["name"] for p in mine] == ["alice"]
    # unknown paths and methods answer in Keystone's format too
    assert cloud.call("GET", "/identity/v3/nothing", admin, status=404).json["error"]["code"] == 404
    assert cloud.call("PUT", "/identity/v3/projects", admin, status=405).json["error"]["code"] == 405


def test_identity_crud_conflicts_and_lookups(cloud):
    admin = cloud.admin_token()
    alice = cloud.tenant("alice", admin)
    dup = cloud.call("POST", "/identity/v3/projects", admin, {"project": {"name": "alice"}}, status=409)
    assert dup.json["error"]["title"] == "Conflict"
    cloud.call("POST", "/identity/v3/users", admin, {"user": {"name": "alice", "password": "x"}}, status=409)
    cloud.call("POST", "/identity/v3/roles", admin, {"role": {"name": "member"}}, status=409)
    cloud.call("POST", "/identity/v3/projects", admin, {"project": {"name": "d", "domain_id": "other"}}, status=400)
    cloud.call("POST", "/identity/v3/projects", admin, {"project": {"name": ""}}, status=400)
    cloud.call("POST", "/identity/v3/projects", admin, {"project": {"name": "e", "enabled": "yes"}}, status=400)
    cloud.call("POST", "/identity/v3/users", admin, {"user": {"name": "f", "default_project_id": "nope"}},
               status=400)
    cloud.call("POST", "/identity/v3/projects", admin, body=None, status=400)
    assert cloud.call("GET", "/identity/v3/projects?name=alice", admin).json["projects"][0]["id"] == \
        alice["project"]["id"]
    assert cloud.call("GET", "/identity/v3/projects/nope", admin, status=404).json["error"]["title"] == "Not Found"
    assert {r["name"] for r in cloud.call("GET", "/identity/v3/roles", admin).json["roles"]} == \
        {"admin", "member", "reader"}
    listed = cloud.call("GET", f"/identity/v3/role_assignments?scope.project.id={alice['project']['id']}"
                               "&include_names", admin, status=200).json["role_assignments"]
    assert [(a["user"]["name"], a["role"]["name"]) for a in listed] == [("alice", "member")]
    effective = cloud.call("GET", f"/identity/v3/role_assignments?user.id={alice['user']['id']}&effective",
                           admin).json["role_assignments"]
    assert len(effective) == 2        # member, and reader which it implies
    assert cloud.call("GET", "/identity/v3/domains/default", admin, status=200).json["domain"]["name"] == "Default"
    cloud.call("GET", "/identity/v3/domains/other", admin, status=404)
    roles = cloud.call("GET", f"/identity/v3/projects/{alice['project']['id']}/users/{alice['user']['id']}/roles",
                       admin, status=200).json["roles"]
    assert [r["name"] for r in roles] == ["member"]


# ---- bootstrap, sharing, static token, noauth ----------------------------------------------------
def test_bootstrap_needs_password_once_and_keeps_the_first():
    store = open_store("memory://")
    identity = Identity(store, bcrypt_rounds=4)
    with pytest.raises(NotBootstrapped):
        identity.bootstrap(None, "p0")
    assert identity.bootstrap("first", "p0") is True
    assert identity.bootstrap("second", "p0") is False        # later starts change nothing
    assert identity.bootstrap(None, "p0") is False
    info = identity.authenticate(password_auth("admin", "first", "admin")["auth"])
    assert info.project is not None and info.project["id"] == "p0" and info.is_admin


def test_two_api_servers_share_tokens_through_the_store(tmp_path):
    url = f"sqlite://{tmp_path}/shared.db"
    one = Cloud(url)
    two = Cloud(store=open_store(url))         # another process's view of the same file
    token = one.admin_token()
    two.call("GET", NET, token, status=200)
    one.call("DELETE", TOKENS, token, headers={"X-Subject-Token": token}, status=204)
    _neutron_401(two.call("GET", NET, token))


def test_static_token_still_admin_in_builtin_mode():
    cloud = Cloud(api_token="static-secret")
    assert cloud.call("GET", NET, "static-secret", status=200).json == {"networks": []}
    _neutron_401(cloud.call("GET", NET, "static-secre"))


def test_noauth_is_the_default_and_serves_no_identity():
    svc = Service(open_store("memory://"))
    client = falcon.testing.TestClient(create_app(svc))
    assert client.simulate_get(NET).status_code == 200
    made = client.simulate_post(NET, json={"network": {"name": "n"}}, headers={"X-Project-Id": "alice"}).json
    assert made["network"]["project_id"] == "alice"
    assert client.simulate_get("/identity/v3").status_code == 404


def test_noauth_contexts():
    class Req:
        path = "/v2.0/networks"

        def __init__(self, **headers):
            self.headers = {k.upper(): v for k, v in headers.items()}

        def get_header(self, name):
            return self.headers.get(name.upper())

    auth = NoAuth("dflt")
    admin = auth.authenticate(Req(), None)
    assert admin == Context("dflt", True, roles=("admin", "member", "reader"))
    tenant = auth.authenticate(Req(**{"X-Project-Id": "alice"}), None)
    assert (tenant.project_id, tenant.is_admin, tenant.roles) == ("alice", False, ("member", "reader"))
    reader = auth.authenticate(Req(**{"X-Project-Id": "alice", "X-Roles": "reader"}), None)
    assert reader.roles == ("reader",) and not reader.is_admin
    assert auth.authenticate(Req(**{"X-Project-Id": "a", "X-Roles": "member,admin"}), None).is_admin


def test_context_for_policy():
    ctx = roles_context("p1", ["member"], user_id="u1", auth_mode="builtin")
    assert ctx.roles == ("member", "reader") and not ctx.is_admin and ctx.tenant_id == "p1"
    values = ctx.to_policy_values()
    assert values["roles"] == ["member", "reader"] and values["project_id"] == "p1" and values["user_id"] == "u1"
    assert Context("p", True).roles == () and Context("p", False).is_admin is False   # old call sites


# ---- keystone mode (keystonemiddleware auth_token) ------------------------------------------------
@pytest.fixture()
def keystone():
    from keystonemiddleware import fixture as ksm_fixture
    fix = ksm_fixture.AuthTokenFixture()
    fix.setUp()
    svc = Service(open_store("memory://"))
    auth = KeystoneAuth({"www_authenticate_uri": "http://keystone.example:5000/v3"},
                        svc.settings.default_project_id)
    client = falcon.testing.TestClient(auth.wsgi(create_app(svc, auth=auth)))
    yield fix, client
    fix.cleanUp()


def test_keystone_mode_401_for_missing_and_forged_tokens(keystone):
    fix, client = keystone
    for headers in ({}, {"X-Auth-Token": "forged"}, {"X-Auth-Token": "forged", "X-Project-Id": "p"}):
        resp = client.simulate_get(NET, headers=headers)
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"] == 'Keystone uri="http://keystone.example:5000/v3"'
    assert client.simulate_get("/").status_code == 200       # version discovery without a token


def test_keystone_mode_context_from_validated_token(keystone):
    fix, client = keystone
    fix.add_token_data(token_id="alice-tok", project_id="alice-p", user_id="alice-u", role_list=["member"])
    fix.add_token_data(token_id="bob-tok", project_id="bob-p", user_id="bob-u", role_list=["member"])
    fix.add_token_data(token_id="admin-tok", project_id="adm-p", user_id="adm-u", role_list=["admin"])
    forged = {"X-Project-Id": "bob-p", "X-Roles": "admin"}
    net = client.simulate_post(NET, json={"network": {"name": "a"}},
                               headers=dict(forged, **{"X-Auth-Token": "alice-tok"})).json["network"]
    assert net["project_id"] == "alice-p"
    assert client.simulate_get(NET, headers={"X-Auth-Token": "bob-tok"}).json["networks"] == []
    assert client.simulate_get(f"{NET}/{net['id']}", headers={"X-Auth-Token": "bob-tok"}).status_code == 404
    assert [n["id"] for n in client.simulate_get(NET, headers={"X-Auth-Token": "admin-tok"}).json["networks"]] \
        == [net["id"]]


def test_keystone_mode_unreachable_keystone_is_503_not_401():
    """auth_token really calls Keystone (no fixture): nothing listens on loopback port 9."""
    svc = Service(open_store("memory://"))
    dead = "http://127.0.0.1:9/v3"
    auth = KeystoneAuth({"www_authenticate_uri": dead, "auth_type": "password", "auth_url": dead,
                         "username": "neutron", "password": "x", "project_name": "service",
                         "user_domain_name": "Default", "http_connect_timeout": "1",
                         "http_request_max_retries": "0"}, svc.settings.default_project_id)
    client = falcon.testing.TestClient(auth.wsgi(create_app(svc, auth=auth)))
    resp = client.simulate_get(NET, headers={"X-Auth-Token": "any"})
    assert resp.status_code == 503 and "Keystone service is temporarily unavailable" in resp.text
    assert client.simulate_get(NET).status_code == 401


# ---- serve configuration --------------------------------------------------------------------------
def _load(argv, monkeypatch, env_password=None):
    from oslo_config import cfg
    if env_password is None:
        monkeypatch.delenv(config.ADMIN_PASSWORD_ENV, raising=False)
    else:
        monkeypatch.setenv(config.ADMIN_PASSWORD_ENV, env_password)
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.StrOpt("ofp_listen_host"), cfg.IntOpt("ofp_tcp_listen_port")])  # os-ken's, on CONF
    return config.load(argv, conf)


def test_serve_auth_options(monkeypatch, tmp_path, caplog):
    assert _load([], monkeypatch).auth == "noauth"
    ini = tmp_path / "tf.ini"
    ini.write_text("[DEFAULT]\nauth = builtin\n[identity]\nadmin_password = from-ini\ntoken_expiration = 120\n")
    loaded = _load(["--config-file", str(ini)], monkeypatch)
    assert (loaded.auth, loaded.admin_password, loaded.token_expiration) == ("builtin", "from-ini", 120)
    assert _load(["--config-file", str(ini)], monkeypatch, env_password="from-env").admin_password == "from-env"
    with pytest.raises(SystemExit):
        _load(["--auth", "bogus"], monkeypatch)
    # builtin without a password at first start refuses to serve
    nopw = _load(["--auth", "builtin"], monkeypatch)
    with pytest.raises(serve.AuthConfigError):
        serve.build_auth(nopw, open_store("memory://"), nopw.settings)
    caplog.set_level("WARNING")
    noauth = _load([], monkeypatch)
    serve.build_auth(noauth, open_store("memory://"), noauth.settings)
    assert "NO AUTHENTICATION" in caplog.text


def test_serve_keystone_mode_reads_keystone_authtoken_from_the_ini(monkeypatch, tmp_path):
    from keystonemiddleware import fixture as ksm_fixture
    ini = tmp_path / "tf.ini"
    ini.write_text("[DEFAULT]\nauth = keystone\n[keystone_authtoken]\n"
                   "www_authenticate_uri = http://ks.example/identity\n")
    loaded = _load(["--config-file", str(ini)], monkeypatch)
    svc = Service(open_store("memory://"))
    auth = serve.build_auth(loaded, svc.store, svc.settings)
    fix = ksm_fixture.AuthTokenFixture()
    fix.setUp()
    try:
        fix.add_token_data(token_id="t", project_id="p", user_id="u", role_list=["member"])
        client = falcon.testing.TestClient(auth.wsgi(create_app(svc, auth=auth)))
        resp = client.simulate_get(NET)
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == 'Keystone uri="http://ks.example/identity"'
        assert client.simulate_get(NET, headers={"X-Auth-Token": "t"}).status_code == 200
    finally:
        fix.cleanUp()


# ---- etcd: several API servers, one identity ------------------------------------------------------
@needs_etcd
def test_two_api_servers_share_identity_over_etcd():
    server = EtcdServer().start()
    try:
        url = server.store_url()
        one, two = Cloud(store=open_store(url)), Cloud(store=open_store(url))   # second bootstrap: no-op
        assert len([u for u in one.store.list(USER) if u["name"] == "admin"]) == 1
        admin = one.admin_token()
        two.call("GET", NET, admin, status=200)                        # issued on one, valid on two
        alice = two.tenant("alice", two.admin_token())
        at = one.token("alice", "alice-pw", "alice")
        net = two.call("POST", NET, at, {"network": {"name": "a"}}, status=201).json["network"]
        assert net["project_id"] == alice["project"]["id"]
        # the same name created on both servers at once: exactly one project
        results: list[int] = []
        threads = [threading.Thread(target=lambda c=c: results.append(c.call(
            "POST", "/identity/v3/projects", admin, {"project": {"name": "race"}}).status_code)) for c in (one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == [201, 409]
        one.call("DELETE", TOKENS, at, headers={"X-Subject-Token": at}, status=204)
        _neutron_401(two.call("GET", NET, at))
        one.store.close()
        two.store.close()
    finally:
        server.stop()


def test_openapi_lists_every_identity_path(cloud):
    from topology.api.identity import openapi_identity
    admin = cloud.admin_token()
    paths, _ = openapi_identity()
    for template, item in paths.items():
        path = template.replace("{id}", "x").replace("{user_id}", "y").replace("{role_id}", "z")
        for method in ("get", "post", "put", "patch", "delete", "head"):
            if method in item:
                resp = cloud.call(method.upper(), path, admin, headers={"X-Subject-Token": "x"})
                # answered by a route (a 404 from a route names what it could not find)
                assert resp.status_code not in (405, 500), (method, path, resp.text)
                if resp.status_code == 404 and method != "head":
                    assert resp.json["error"]["message"] != "The resource could not be found.", (method, path)


def test_unknown_user_costs_a_full_bcrypt_check():
    """The dummy hash an unknown user's password is checked against (no enumeration by timing) has
    the cost real hashes have, and a wrong password never matches it."""
    import bcrypt
    from topology.model import identity
    assert identity._DUMMY_HASH.split(b"$")[2] == b"%02d" % identity.BCRYPT_ROUNDS
    assert bcrypt.checkpw(b"x", identity._DUMMY_HASH)  # a real bcrypt hash
    assert identity.check_password("x", None) is False
