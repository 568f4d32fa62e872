"""The web dashboard (/dashboard/) in a real browser: Playwright driving Debian's chromium headless
against a real `tenantflow serve` with one real chassis (OVS) and two VMs.

What is proven: the page renders what the API holds (and its HTML carries none of it); what the
page creates or deletes is what the API then holds; an API change from another client appears
without a reload; Neutron's error message is shown and nothing is created; the chassis panel, a
port's flows and the trace form show what the controller reports; with built-in auth the page
asks for a login, shows Keystone's refusal, and works with the token.

Set TF_DASHBOARD_SCREENSHOT=docs/dashboard.png to refresh the README's screenshot (default: the
bed's work directory, so a test run does not change the tree).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.integration.test_security_helpers import eventually, start
from tests.testbed import serve_implemented
from tests.testbed.api import NeutronApiError
from tests.testbed.controller import Controller

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright not installed (make setup)")
expect = playwright_sync.expect

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]

CHROMIUM = "/usr/bin/chromium"
# What the environment notes prescribe for chromium on a machine with no outside network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LIVE = 15_000      # ms: the page polls every 2 s; generous for a loaded 2-core machine


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run `make setup` (scripts/install-system-packages)"
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def env(module_bed):
    """A controller, chassis c1, network `dash-web` with two VMs on c1, an external network and a
    router between them (so the graph has every kind of node)."""
    bed = module_bed
    (c1,) = start(bed, ("c1",))
    api = bed.api
    public, _ = api.network_with_subnet("dash-public", "203.0.113.0/24", **{"router:external": True})
    net, sub = api.network_with_subnet("dash-web", "10.61.0.0/24")
    router = api.create("routers", name="dash-edge", external_gateway_info={"network_id": public["id"]})
    api.put(f"routers/{router['id']}/add_router_interface", {"subnet_id": sub["id"]})
    ports = [api.port(net, name=f"dash-vm{i}") for i in (1, 2)]
    vms = [bed.add_vm(c1, p, name=f"dv{i}") for i, p in enumerate(ports, 1)]
    for p in ports:
        assert bed.wait_port_status(p), bed.diagnostics()
    api.create("floatingips", floating_network_id=public["id"], port_id=ports[0]["id"])
    return bed, net, ports, vms


@pytest.fixture
def page(browser, env):
    bed = env[0]
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(bed.controller.api_url + "/dashboard/")
    expect(pg.locator("#main")).to_be_visible()
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def row(pg, table: str, text: str):
    return pg.locator(f"{table} tbody tr", has_text=text)


def test_static_files_served_without_auth_and_without_data(env):
    bed = env[0]
    url = bed.controller.api_url
    index = requests.get(url + "/dashboard/", timeout=5)
    assert index.status_code == 200 and index.headers["Content-Type"].startswith("text/html")
    assert "dash-web" not in index.text and "10.61.0" not in index.text     # rendered from the API only
    js = requests.get(url + "/dashboard/js/main.js", timeout=5)
    assert js.status_code == 200 and js.headers["Content-Type"].startswith("text/javascript")
    assert requests.get(url + "/dashboard/no-such.js", timeout=5).status_code == 404
    assert requests.get(url + "/dashboard/%2e%2e/%2e%2e/setup.py", timeout=5).status_code == 404
    redirect = requests.get(url + "/dashboard", timeout=5, allow_redirects=False)
    assert redirect.status_code == 301 and redirect.headers["Location"].endswith("/dashboard/")


def test_page_renders_what_the_api_holds(page, env):
    bed, net, ports, vms = env
    graph = page.locator("#graph svg.topology")
    expect(graph).to_contain_text("dash-web")
    expect(graph).to_contain_text("dash-edge")
    for p, vm in zip(ports, vms):
        expect(graph).to_contain_text(p["name"])
        expect(row(page, "#ports-table", p["name"])).to_contain_text(vm.ip)
        expect(row(page, "#ports-table", p["name"])).to_contain_text("c1")          # binding:host_id
    expect(row(page, "#networks-table", "dash-web")).to_contain_text("10.61.0.0/24")
    router = bed.api.list("routers", name="dash-edge")[0]
    gw_ip = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    expect(row(page, "#routers-table", "dash-edge")).to_contain_text(gw_ip)
    fip = bed.api.list("floatingips", port_id=ports[0]["id"])[0]
    expect(row(page, "#floatingips-table", fip["floating_ip_address"])).to_contain_text(vms[0].ip)
    expect(page.locator("#chassis-table")).to_contain_text("connected")
    shot = Path(os.environ.get("TF_DASHBOARD_SCREENSHOT") or bed.workdir / "dashboard.png")
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000


def test_api_change_appears_without_reload(page, env):
    api = env[0].api
    page.evaluate("window.__sameDocument = true")
    net = api.create("networks", name="dash-from-cli")
    expect(row(page, "#networks-table", "dash-from-cli")).to_have_count(1, timeout=LIVE)
    expect(page.locator("#graph")).to_contain_text("dash-from-cli")
    api.remove("networks", net["id"])
    expect(row(page, "#networks-table", "dash-from-cli")).to_have_count(0, timeout=LIVE)
    assert page.evaluate("window.__sameDocument") is True      # the same document: no reload happened


def test_admin_project_selector_shows_one_project(page, env):
    api = env[0].api
    other = api.as_project("dash-other")
    net = other.create("networks", name="dash-other-net")
    try:
        expect(row(page, "#networks-table", "dash-other-net")).to_have_count(1, timeout=LIVE)   # admin: all
        page.locator("#project-select").select_option("dash-other")
        expect(row(page, "#networks-table", "dash-other-net")).to_have_count(1)
        expect(row(page, "#networks-table", "dash-web")).to_have_count(0)
        expect(row(page, "#networks-table", "dash-public")).to_have_count(1)    # external: everyone's
        form = page.locator("form[data-create=network]")           # creates go into the chosen project
        form.locator("input[name=name]").fill("dash-other-2")
        form.get_by_role("button").click()
        expect(row(page, "#networks-table", "dash-other-2")).to_have_count(1)
        assert [n["name"] for n in other.list("networks", name="dash-other-2")] == ["dash-other-2"]
        page.locator("#project-select").select_option("")
        expect(row(page, "#networks-table", "dash-web")).to_have_count(1)
    finally:
        for n in other.list("networks"):
            if n["name"].startswith("dash-other"):
                other.remove("networks", n["id"])
    assert net["project_id"] == "dash-other"


def test_network_and_subnet_created_in_the_page_appear_in_the_api(page, env):
    api = env[0].api
    form = page.locator("form[data-create=network]")
    form.locator("input[name=name]").fill("dash-made-in-page")
    form.get_by_role("button").click()
    expect(page.locator("#message")).to_contain_text("network created")
    nets = api.list("networks", name="dash-made-in-page")
    assert len(nets) == 1
    sub_form = page.locator("form[data-create=subnet]")
    sub_form.locator("select[name=network_id]").select_option(label="dash-made-in-page")
    sub_form.locator("input[name=cidr]").fill("10.62.0.0/24")
    sub_form.get_by_role("button").click()
    expect(row(page, "#networks-table", "dash-made-in-page")).to_contain_text("10.62.0.0/24")
    assert [s["cidr"] for s in api.list("subnets", network_id=nets[0]["id"])] == ["10.62.0.0/24"]
    # deleting from the page: the subnet first (a network with a subnet can go too, but one step each)
    row(page, "#networks-table", "dash-made-in-page").get_by_role("button", name="delete").click()
    expect(row(page, "#networks-table", "dash-made-in-page")).to_have_count(0)
    assert api.list("networks", name="dash-made-in-page") == []


def test_neutron_error_is_shown_and_nothing_created(page, env):
    api = env[0].api
    net = env[1]
    before = {s["id"] for s in api.list("subnets")}
    form = page.locator("form[data-create=subnet]")
    form.locator("select[name=network_id]").select_option(value=net["id"])
    form.locator("input[name=cidr]").fill("10.61.0.128/25")        # overlaps dash-web's 10.61.0.0/24
    form.get_by_role("button").click()
    with pytest.raises(NeutronApiError) as exc:                    # the same request, as a CLI would send it
        api.create("subnets", network_id=net["id"], cidr="10.61.0.128/25", ip_version=4, name="")
    assert exc.value.status == 400 and exc.value.message
    expect(page.locator("#message")).to_have_text(exc.value.message)
    expect(page.locator("#message")).to_have_class(re.compile("error"))
    form.locator("input[name=cidr]").fill("10.61.0.0/33")           # not a CIDR at all
    form.get_by_role("button").click()
    expect(page.locator("#message")).to_contain_text("10.61.0.0/33")
    assert {s["id"] for s in api.list("subnets")} == before


def test_router_interface_security_group_and_floating_ip_from_the_page(page, env):
    api = env[0].api
    page.locator("form[data-create=network] input[name=name]").fill("dash-db")
    page.locator("form[data-create=network] button").click()
    expect(page.locator("form[data-create=subnet] select[name=network_id] option", has_text="dash-db")).to_have_count(1)
    page.locator("form[data-create=subnet] select[name=network_id]").select_option(label="dash-db")
    page.locator("form[data-create=subnet] input[name=cidr]").fill("10.63.0.0/24")
    page.locator("form[data-create=subnet] input[name=name]").fill("dash-db-v4")
    page.locator("form[data-create=subnet] button").click()
    expect(page.locator("#message")).to_contain_text("subnet created")

    page.locator("form[data-create=router] input[name=name]").fill("dash-r2")
    page.locator("form[data-create=router] select[name=external_network]").select_option(label="dash-public")
    page.locator("form[data-create=router] button").click()
    expect(page.locator("#message")).to_contain_text("router created")
    iface = page.locator("form[data-create=interface]")
    iface.locator("select[name=router_id]").select_option(label="dash-r2")
    iface.locator("select[name=subnet_id]").select_option(label="dash-db-v4 10.63.0.0/24")
    iface.locator("button").click()
    expect(row(page, "#routers-table", "dash-r2")).to_contain_text("10.63.0.1")
    router = api.list("routers", name="dash-r2")[0]
    assert router["external_gateway_info"]["network_id"] == api.list("networks", name="dash-public")[0]["id"]
    assert [p["fixed_ips"][0]["ip_address"] for p in api.list("ports", device_id=router["id"],
                                                              device_owner="network:router_interface")] == ["10.63.0.1"]

    page.locator("form[data-create=security_group] input[name=name]").fill("dash-sg")
    page.locator("form[data-create=security_group] button").click()
    rule = page.locator("form[data-create=security_group_rule]")
    expect(rule.locator("select[name=security_group_id] option", has_text="dash-sg")).to_have_count(1)
    rule.locator("select[name=security_group_id]").select_option(label="dash-sg")
    rule.locator("select[name=protocol]").select_option("tcp")
    rule.locator("input[name=ports]").fill("8000-8080")
    rule.locator("input[name=remote_ip_prefix]").fill("192.0.2.0/24")
    rule.locator("button").click()
    expect(row(page, "#security-groups-table", "dash-sg")).to_contain_text("tcp 8000-8080 from 192.0.2.0/24")
    sg = api.list("security-groups", name="dash-sg")[0]
    assert any(r["protocol"] == "tcp" and r["port_range_min"] == 8000 and r["port_range_max"] == 8080
               for r in sg["security_group_rules"])
    # an invalid rule: Neutron's message, no rule added
    rule.locator("select[name=security_group_id]").select_option(label="dash-sg")
    rule.locator("input[name=ports]").fill("9000-8000")
    rule.locator("button").click()
    expect(page.locator("#message")).to_have_class(re.compile("error"))
    assert len(api.show("security-groups", sg["id"])["security_group_rules"]) == len(sg["security_group_rules"])

    fip_form = page.locator("form[data-create=floatingip]")
    fip_form.locator("select[name=floating_network_id]").select_option(label="dash-public")
    fip_form.locator("button").click()
    expect(page.locator("#message")).to_contain_text("floatingip created")
    unassociated = [f for f in api.list("floatingips") if not f["port_id"]]
    assert len(unassociated) == 1
    address = unassociated[0]["floating_ip_address"]
    row(page, "#floatingips-table", address).get_by_role("button", name="delete").click()
    expect(row(page, "#floatingips-table", address)).to_have_count(0)
    assert [f for f in api.list("floatingips") if not f["port_id"]] == []

    # clean up through the page: interface, router, group
    row(page, "#routers-table", "dash-r2").get_by_role("button", name="remove").click()
    expect(row(page, "#routers-table", "dash-r2")).not_to_contain_text("10.63.0.1")
    row(page, "#routers-table", "dash-r2").get_by_role("button", name="delete").click()
    row(page, "#security-groups-table", "dash-sg").get_by_role("button", name="delete", exact=True).last.click()
    expect(row(page, "#routers-table", "dash-r2")).to_have_count(0)
    expect(row(page, "#security-groups-table", "dash-sg")).to_have_count(0)
    assert api.list("routers", name="dash-r2") == [] and api.list("security-groups", name="dash-sg") == []


def test_chassis_port_flows_and_trace(page, env):
    bed, net, ports, vms = env
    chassis_row = row(page, "#chassis-table", "c1")
    expect(chassis_row).to_contain_text("connected")
    expect(chassis_row).to_contain_text("master")

    def counts_agree() -> bool:
        """The page's desired/installed counts are the API's (both move while flows converge)."""
        cells = chassis_row.locator("td").all_inner_texts()
        (dp,) = [d for d in bed.api.get("/v2.0/tenantflow/stats")["datapaths"].values() if d["chassis"] == "c1"]
        return cells[4:6] == [str(dp["desired_flows"]), str(dp["installed_flows"])] and dp["desired_flows"] > 0
    assert eventually(counts_agree, timeout=LIVE / 1000), chassis_row.inner_text()

    row(page, "#ports-table", "dash-vm1").get_by_role("button", name="flows").click()
    report = bed.api.get("/v2.0/tenantflow/flows", chassis="c1", owner_type="port", owner_id=ports[0]["id"])
    assert report["flows"]
    expect(page.locator("#flows")).to_contain_text(f"{len(report['flows'])} desired flows of port dash-vm1 on c1")
    expect(page.locator("#flows pre")).to_contain_text(report["flows"][0]["flow"])

    form = page.locator("#trace-form")
    form.locator("select[name=from_port]").select_option(value=ports[0]["id"])
    form.locator("input[name=dst_ip]").fill(vms[1].ip)
    form.locator("button").click()
    expect(page.locator("#trace .verdict")).to_have_text(
        f"Verdict: delivered to port {ports[1]['id']} on c1 (delivered)")
    expect(page.locator("#trace ol.stages li").first).to_be_visible()
    form.locator("input[name=dst_ip]").fill("not-an-ip")        # the API's refusal is shown
    form.locator("button").click()
    expect(page.locator("#message")).to_have_class(re.compile("error"))
    expect(page.locator("#trace")).to_be_empty()


@pytest.fixture(scope="module")
def builtin_controller(module_bed) -> Iterator[Controller]:
    """A second `tenantflow serve`, with the built-in identity (no chassis needed for the login)."""
    workdir = module_bed.workdir / "builtin"
    workdir.mkdir()
    ctl = Controller(workdir, ofp_host="127.0.0.1", check_compile=False)
    ctl.start(["--auth", "builtin"], env={"TENANTFLOW_ADMIN_PASSWORD": "dash-secret"})
    try:
        yield ctl
    finally:
        ctl.stop()


def test_builtin_auth_login_form(browser, builtin_controller):
    url = builtin_controller.api_url
    assert requests.get(url + "/v2.0/networks", timeout=5).status_code == 401      # the API needs a token
    ctx = browser.new_context()
    pg = ctx.new_page()
    try:
        pg.goto(url + "/dashboard/")
        expect(pg.locator("#login")).to_be_visible()
        expect(pg.locator("#main")).to_be_hidden()
        form = pg.locator("#login-form")
        form.locator("input[name=user]").fill("admin")
        form.locator("input[name=password]").fill("wrong")
        form.locator("input[name=project]").fill("admin")
        form.locator("button").click()
        expect(pg.locator("#message")).to_have_class(re.compile("error"))
        expect(pg.locator("#main")).to_be_hidden()
        expect(pg.locator("#message")).not_to_be_empty()               # Keystone's message, shown
        token_form = pg.locator("#token-form")
        token_form.locator("input[name=token]").fill("not-a-token")
        token_form.locator("button").click()
        expect(pg.locator("#message")).to_contain_text("refused the token")
        expect(pg.locator("#main")).to_be_hidden()
        form.locator("input[name=password]").fill("dash-secret")
        form.locator("button").click()
        expect(pg.locator("#main")).to_be_visible()
        expect(pg.locator("#whoami")).to_contain_text("admin")
        pg.locator("form[data-create=network] input[name=name]").fill("dash-with-token")
        pg.locator("form[data-create=network] button").click()
        expect(row(pg, "#networks-table", "dash-with-token")).to_have_count(1)
        pg.locator("#logout").click()
        expect(pg.locator("#login")).to_be_visible()
    finally:
        ctx.close()


def _keystone(url: str, method: str, path: str, token: str | None = None, body=None) -> requests.Response:
    headers = {"X-Auth-Token": token} if token else {}
    r = requests.request(method, url + "/identity/v3" + path, json=body, headers=headers, timeout=10)
    assert r.status_code < 300, (method, path, r.status_code, r.text)
    return r


def _login_in_page(pg, user: str, password: str, project: str) -> None:
    form = pg.locator("#login-form")
    form.locator("input[name=user]").fill(user)
    form.locator("input[name=password]").fill(password)
    form.locator("input[name=project]").fill(project)
    form.locator("button").click()


def test_builtin_auth_member_sees_only_its_project_and_no_admin_panels(browser, builtin_controller):
    url = builtin_controller.api_url
    scope = {"project": {"name": "admin", "domain": {"id": "default"}}}
    auth = {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": "dash-secret"}}}, "scope": scope}
    admin = _keystone(url, "POST", "/auth/tokens", body={"auth": auth}).headers["X-Subject-Token"]
    project = _keystone(url, "POST", "/projects", admin, {"project": {"name": "dash-tenant"}}).json()["project"]
    user = _keystone(url, "POST", "/users", admin, {"user": {"name": "dash-alice", "password": "alice-pw",
                                                             "default_project_id": project["id"]}}).json()["user"]
    (member,) = [r for r in _keystone(url, "GET", "/roles", admin).json()["roles"] if r["name"] == "member"]
    _keystone(url, "PUT", f"/projects/{project['id']}/users/{user['id']}/roles/{member['id']}", admin)
    requests.post(url + "/v2.0/networks", json={"network": {"name": "dash-admins-only"}},
                  headers={"X-Auth-Token": admin}, timeout=10).raise_for_status()
    ctx = browser.new_context()
    pg = ctx.new_page()
    try:
        pg.goto(url + "/dashboard/")
        _login_in_page(pg, "dash-alice", "alice-pw", "dash-tenant")
        expect(pg.locator("#main")).to_be_visible()
        expect(pg.locator("#whoami")).to_contain_text("dash-alice in dash-tenant")
        pg.locator("form[data-create=network] input[name=name]").fill("dash-alice-net")
        pg.locator("form[data-create=network] button").click()
        expect(row(pg, "#networks-table", "dash-alice-net")).to_have_count(1)
        expect(row(pg, "#networks-table", "dash-admins-only")).to_have_count(0)      # another project's
        expect(pg.locator("#admin-panels")).to_be_hidden()                            # stats: 403 for a member
        expect(pg.locator("#project-select")).to_be_hidden()
        nets = requests.get(url + "/v2.0/networks", params={"name": "dash-alice-net"},
                            headers={"X-Auth-Token": admin}, timeout=10).json()["networks"]
        assert [n["project_id"] for n in nets] == [project["id"]]
    finally:
        ctx.close()
