// The dashboard: find out who we are, poll the API every 2 s, render what it holds, and send
// the forms' creates/deletes to the same REST API. Nothing here knows the topology in advance.

import { ApiError, del, get, login, post, put, session, whoami } from "./api.js";
import { fillSelect, label } from "./dom.js";
import { isVmPort, renderGraph } from "./graph.js";
import { renderChassis, renderFlows, renderTables, renderTrace } from "./tables.js";

const POLL_MS = 2000;
const COLLECTIONS = {          // state key -> API collection
  networks: "networks", subnets: "subnets", ports: "ports", routers: "routers",
  floatingips: "floatingips", security_groups: "security-groups",
};
const $ = (sel) => document.querySelector(sel);

const state = {
  admin: false,           // may list every project and read /v2.0/tenantflow/*
  project: "",            // the admin's project filter ("" = all projects)
  all: null,              // the last answer of every collection
  signature: "",          // JSON of what was rendered: re-render only on change
  stats: "",
  timer: null,
};

// ---- messages ------------------------------------------------------------------------------
function showMessage(text, kind = "error") {
  const box = $("#message");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
}

function clearMessage() { $("#message").hidden = true; }

function reportError(err) {
  if (err instanceof ApiError && err.status === 401 && session.token) {
    session.token = null;
    return showLogin("Your token expired or was revoked: log in again.");
  }
  showMessage(err instanceof ApiError ? err.message : String(err));
}

// ---- login ---------------------------------------------------------------------------------
function showLogin(text) {
  stopPolling();
  $("#main").hidden = true;
  $("#login").hidden = false;
  $("#logout").hidden = true;
  if (text) showMessage(text, "info"); else clearMessage();
}

async function onLogin(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const { token } = await login(f.get("user"), f.get("password"), f.get("project"), f.get("domain"));
    session.token = token;
    clearMessage();
    await start();
  } catch (err) {
    showMessage(err.message);
  }
}

async function onToken(ev) {
  ev.preventDefault();
  session.token = new FormData(ev.target).get("token").trim();
  clearMessage();
  await start();
}

async function describeCaller() {
  if (!session.token) return "noauth (admin)";
  try {
    const t = (await whoami(session.token)).token;
    const roles = (t.roles || []).map((r) => r.name).join(",");
    return `${t.user.name} in ${t.project ? t.project.name : "?"} (${roles})`;
  } catch (_) {
    return "token";
  }
}

// ---- polling -------------------------------------------------------------------------------
function stopPolling() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}

async function fetchAll() {
  const entries = await Promise.all(Object.entries(COLLECTIONS).map(async ([key, coll]) =>
    [key, (await get(`/v2.0/${coll}`))[key]]));
  return Object.fromEntries(entries);
}

function visible(all) {
  if (!state.admin || !state.project) return all;
  const mine = (o) => (o.project_id || o.tenant_id) === state.project;
  const out = {};
  for (const key of Object.keys(all)) {
    out[key] = all[key].filter((o) => mine(o) || (key === "networks" && (o["router:external"] || o.shared)));
  }
  const netIds = new Set(out.networks.map((n) => n.id));
  out.subnets = all.subnets.filter((s) => mine(s) || netIds.has(s.network_id));
  return out;
}

function fillProjectSelect(all) {
  const sel = $("#project-select");
  if (!state.admin) return;
  const projects = new Set();
  for (const list of Object.values(all)) for (const o of list) if (o.project_id) projects.add(o.project_id);
  fillSelect(sel, [...projects].sort().map((p) => [p, p]), "all projects");
}

function fillFormSelects(data) {
  const nets = data.networks.map((n) => [n.id, label(n)]);
  const options = {
    "networks": nets,
    "external-networks": data.networks.filter((n) => n["router:external"]).map((n) => [n.id, label(n)]),
    "routers": data.routers.map((r) => [r.id, label(r)]),
    "subnets": data.subnets.map((s) => [s.id, `${label(s)} ${s.cidr}`]),
    "security-groups": data.security_groups.map((g) => [g.id, label(g)]),
    "vm-ports": data.ports.filter(isVmPort).map((p) => [p.id,
      `${label(p) || p.id.slice(0, 8)} ${(p.fixed_ips || []).map((f) => f.ip_address).join(",")}`]),
  };
  for (const sel of document.querySelectorAll("select[data-options]")) {
    fillSelect(sel, options[sel.dataset.options] || [], sel.dataset.empty);
  }
}

function render() {
  if (!state.all) return;
  const data = visible(state.all);
  const signature = JSON.stringify([state.project, data]);
  if (signature === state.signature) return;     // nothing changed: keep the DOM (and focus) as is
  state.signature = signature;
  fillProjectSelect(state.all);
  fillFormSelects(data);
  renderGraph($("#graph"), data);
  renderTables(document, data);
}

async function poll() {
  state.timer = null;
  if (document.hidden) {          // a background tab costs the API nothing; catch up when shown
    state.timer = setTimeout(poll, POLL_MS);
    return;
  }
  try {
    state.all = await fetchAll();
    render();
    if (state.admin) {
      const stats = await get("/v2.0/tenantflow/stats");
      const sig = JSON.stringify(stats.datapaths);
      if (sig !== state.stats) { state.stats = sig; renderChassis($("#chassis-table"), stats); }
    }
    $("#live").className = "ok";
    $("#live").title = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    $("#live").className = "down";
    $("#live").title = err.message;
    if (err instanceof ApiError && err.status === 401) return reportError(err);
  }
  if (!$("#main").hidden) state.timer = setTimeout(poll, POLL_MS);
}

async function refreshNow() {
  stopPolling();
  await poll();
}

// ---- actions -------------------------------------------------------------------------------
function withProject(body) {
  if (state.admin && state.project) body.project_id = state.project;
  return body;
}

function portRange(text) {
  if (!text) return {};
  const [lo, hi] = text.split("-").map((x) => Number(x.trim()));
  return { port_range_min: lo, port_range_max: Number.isFinite(hi) ? hi : lo };
}

const CREATORS = {
  network: (f) => post("/v2.0/networks", { network: withProject({
    name: f.get("name"), ...(f.get("external") ? { "router:external": true } : {}) }) }),
  subnet: (f) => post("/v2.0/subnets", { subnet: withProject({
    network_id: f.get("network_id"), cidr: f.get("cidr"), ip_version: 4, name: f.get("name") }) }),
  port: (f) => post("/v2.0/ports", { port: withProject({ network_id: f.get("network_id"), name: f.get("name") }) }),
  router: (f) => post("/v2.0/routers", { router: withProject({ name: f.get("name"),
    ...(f.get("external_network") ? { external_gateway_info: { network_id: f.get("external_network") } } : {}) }) }),
  interface: (f) => put(`/v2.0/routers/${f.get("router_id")}/add_router_interface`, { subnet_id: f.get("subnet_id") }),
  security_group: (f) => post("/v2.0/security-groups", { security_group: withProject({ name: f.get("name") }) }),
  security_group_rule: (f) => post("/v2.0/security-group-rules", { security_group_rule: withProject({
    security_group_id: f.get("security_group_id"), direction: f.get("direction"), ethertype: "IPv4",
    ...(f.get("protocol") ? { protocol: f.get("protocol") } : {}),
    ...(f.get("remote_ip_prefix") ? { remote_ip_prefix: f.get("remote_ip_prefix") } : {}),
    ...portRange(f.get("ports")) }) }),
  floatingip: (f) => post("/v2.0/floatingips", { floatingip: withProject({
    floating_network_id: f.get("floating_network_id"), ...(f.get("port_id") ? { port_id: f.get("port_id") } : {}) }) }),
};

async function onCreate(ev) {
  ev.preventDefault();
  const form = ev.target;
  try {
    await CREATORS[form.dataset.create](new FormData(form));
    showMessage(`${form.dataset.create.replace(/_/g, " ")} created`, "ok");
    for (const input of form.querySelectorAll("input:not([type=checkbox])")) input.value = "";
    await refreshNow();
  } catch (err) {
    reportError(err);
  }
}

async function onClick(ev) {
  const b = ev.target.closest("button");
  if (!b) return;
  try {
    if (b.dataset.delete) {
      await del(`/v2.0/${b.dataset.delete}`);
      showMessage(`deleted ${b.dataset.delete.split("/")[0]}`, "ok");
      await refreshNow();
    } else if (b.dataset.removeInterface) {
      await put(`/v2.0/routers/${b.dataset.removeInterface}/remove_router_interface`, { subnet_id: b.dataset.subnet });
      showMessage("interface removed", "ok");
      await refreshNow();
    } else if (b.dataset.flows) {
      const port = state.all.ports.find((p) => p.id === b.dataset.flows) || { id: b.dataset.flows };
      const q = new URLSearchParams({ chassis: b.dataset.chassis, owner_type: "port", owner_id: b.dataset.flows });
      renderFlows($("#flows"), await get(`/v2.0/tenantflow/flows?${q}`), port);
    }
  } catch (err) {
    reportError(err);
  }
}

async function onTrace(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const q = new URLSearchParams({ from_port: f.get("from_port"), dst_ip: f.get("dst_ip"), proto: f.get("proto") });
  if (f.get("dst_port")) q.set("dst_port", f.get("dst_port"));
  try {
    renderTrace($("#trace"), await get(`/v2.0/tenantflow/trace?${q}`));
    clearMessage();
  } catch (err) {
    $("#trace").replaceChildren();
    reportError(err);
  }
}

// ---- start ---------------------------------------------------------------------------------
async function start() {
  try {
    await get("/v2.0/networks?limit=1");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      const hadToken = Boolean(session.token);
      session.token = null;
      return showLogin(hadToken ? `The API refused the token: ${err.message}` : undefined);
    }
    return showMessage(`the API does not answer: ${err.message}`);
  }
  try {
    await get("/v2.0/tenantflow/stats");
    state.admin = true;
  } catch (_) {
    state.admin = false;   // 403 for a member: the admin panels and project selector stay hidden
  }
  $("#project-select").parentElement.hidden = !state.admin;
  $("#admin-panels").hidden = !state.admin;
  document.body.classList.toggle("admin", state.admin);
  $("#whoami").textContent = await describeCaller();
  $("#logout").hidden = !session.token;
  $("#login").hidden = true;
  $("#main").hidden = false;
  state.signature = "";
  state.stats = "";
  await refreshNow();
}

function wire() {
  $("#login-form").addEventListener("submit", onLogin);
  $("#token-form").addEventListener("submit", onToken);
  $("#logout").addEventListener("click", () => { session.token = null; showLogin("Logged out."); });
  $("#project-select").addEventListener("change", (ev) => { state.project = ev.target.value; render(); });
  for (const form of document.querySelectorAll("form[data-create]")) form.addEventListener("submit", onCreate);
  $("#trace-form").addEventListener("submit", onTrace);
  $("#main").addEventListener("click", onClick);
  document.addEventListener("visibilitychange", () => { if (!document.hidden && state.timer) refreshNow(); });
}

wire();
start();
