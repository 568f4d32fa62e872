// The topology as tables; every row's delete button names the API path it deletes.

import { fillTable, h, label, shortId } from "./dom.js";

const ips = (p) => (p.fixed_ips || []).map((f) => f.ip_address).join(", ");

function del(path, what) {
  return h("button", { class: "delete", "data-delete": path, title: `delete ${what}` }, "delete");
}

export function renderTables(root, data) {
  const netById = new Map(data.networks.map((n) => [n.id, n]));
  const subById = new Map(data.subnets.map((s) => [s.id, s]));
  const portById = new Map(data.ports.map((p) => [p.id, p]));
  const q = (id) => root.querySelector(id);

  fillTable(q("#networks-table"), ["name", "id", "subnets", "external", "project", ""],
    data.networks.map((n) => [label(n), shortId(n.id),
      data.subnets.filter((s) => s.network_id === n.id).map((s) => s.cidr).join(", "),
      n["router:external"] ? "yes" : "", n.project_id || n.tenant_id || "", del(`networks/${n.id}`, n.name)]));

  fillTable(q("#subnets-table"), ["name", "cidr", "network", "gateway", "dhcp", ""],
    data.subnets.map((s) => [s.name || shortId(s.id), s.cidr, label(netById.get(s.network_id)) || shortId(s.network_id),
      s.gateway_ip || "", s.enable_dhcp ? "yes" : "no", del(`subnets/${s.id}`, s.name)]));

  fillTable(q("#ports-table"), ["name", "network", "addresses", "mac", "owner", "chassis", "status", ""],
    data.ports.map((p) => {
      const host = p["binding:host_id"];
      const flows = host ? h("button", { "data-flows": p.id, "data-chassis": host, class: "admin-only" }, "flows")
                         : "";
      return [p.name || shortId(p.id), label(netById.get(p.network_id)) || shortId(p.network_id), ips(p),
        p.mac_address || "", p.device_owner || "", host || "", p.status || "",
        h("span", {}, flows, " ", del(`ports/${p.id}`, p.name))];
    }));

  fillTable(q("#routers-table"), ["name", "gateway", "interfaces", "status", ""],
    data.routers.map((r) => {
      const gw = r.external_gateway_info;
      const gwText = gw && gw.network_id
        ? `${label(netById.get(gw.network_id)) || shortId(gw.network_id)} ` +
          (gw.external_fixed_ips || []).map((f) => f.ip_address).join(", ")
        : "";
      const ifaces = data.ports.filter((p) => p.device_id === r.id && p.device_owner === "network:router_interface")
        .map((p) => {
          const sid = (p.fixed_ips || [])[0]?.subnet_id;
          const sub = subById.get(sid);
          return h("div", {}, `${sub ? sub.cidr : ""} ${ips(p)} `,
            h("button", { class: "delete", "data-remove-interface": r.id, "data-subnet": sid || "" }, "remove"));
        });
      return [label(r), gwText, ifaces.length ? ifaces : "", r.status || "", del(`routers/${r.id}`, r.name)];
    }));

  fillTable(q("#floatingips-table"), ["address", "network", "fixed IP", "port", "status", ""],
    data.floatingips.map((f) => [f.floating_ip_address, label(netById.get(f.floating_network_id)) || "",
      f.fixed_ip_address || "", f.port_id ? label(portById.get(f.port_id)) || shortId(f.port_id) : "",
      f.status || "", del(`floatingips/${f.id}`, f.floating_ip_address)]));

  fillTable(q("#security-groups-table"), ["name", "rules", ""],
    data.security_groups.map((g) => [label(g),
      (g.security_group_rules || []).map((r) => h("div", {},
        `${r.direction} ${r.ethertype || ""} ${r.protocol || "any"}` +
        `${r.port_range_min != null ? " " + r.port_range_min + (r.port_range_max !== r.port_range_min ? "-" + r.port_range_max : "") : ""}` +
        `${r.remote_ip_prefix ? " from " + r.remote_ip_prefix : ""}${r.remote_group_id ? " group " + shortId(r.remote_group_id) : ""} `,
        del(`security-group-rules/${r.id}`, "rule"))),
      del(`security-groups/${g.id}`, g.name)]));
}

export function renderChassis(table, stats) {
  const dps = Object.entries((stats && stats.datapaths) || {});
  fillTable(table, ["chassis", "datapath", "connection", "role", "desired flows", "installed flows", "health"],
    dps.map(([dpid, d]) => [d.chassis || "", dpid, d.connected ? "connected" : "disconnected",
      d.master ? "master" : "standby", d.desired_flows, d.installed_flows,
      d.healthy ? "healthy" : (d.problems || []).join("; ") || "unhealthy"]),
    "no chassis has connected");
}

export function renderFlows(root, report, port) {
  const flows = report.flows || [];
  root.replaceChildren(
    h("p", {}, `${flows.length} desired flows of port ${label(port) || port.id} on ${report.chassis}` +
      ` (${report.connected ? "connected" : "disconnected"})`),
    h("pre", { class: "flows" }, flows.map((f) => f.flow).join("\n")));
}

export function renderTrace(root, t) {
  root.replaceChildren(
    h("p", { class: `verdict ${t.kind || ""}` }, `Verdict: ${t.verdict} (${t.kind})`),
    h("ol", { class: "stages" }, (t.stages || []).map((st) =>
      h("li", { style: `margin-left:${(st.depth || 0) * 1.2}em` },
        h("b", {}, `${st.chassis} ${st.stage}`), " ", st.owner ? `[${st.owner}] ` : "",
        h("code", {}, st.flow || "table miss")))));
}
