// The topology as SVG, laid out like Horizon's network topology: one vertical bar per network,
// one row per device (router, VM port), a horizontal line from the device to each network it is
// on, with the address at the crossing. No layout library: the layout is a grid.

const NS = "http://www.w3.org/2000/svg";
const COL_W = 150, ROW_H = 46, LEFT = 230, TOP = 64, BOX_W = 190, BOX_H = 32;

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

const INFRA_OWNERS = new Set(["network:router_interface", "network:router_gateway", "network:floatingip",
                              "network:dhcp", "network:router_interface_distributed"]);

export function isVmPort(port) {
  return !INFRA_OWNERS.has(port.device_owner || "");
}

/** Devices to draw: routers (interfaces + gateway) and VM ports, each with its attachments. */
function devices(data) {
  const out = [];
  for (const r of data.routers) {
    const links = [];
    for (const p of data.ports) {
      if (p.device_id === r.id && p.device_owner === "network:router_interface") {
        links.push({ network: p.network_id, text: (p.fixed_ips || []).map((f) => f.ip_address).join(" ") });
      }
    }
    const gw = r.external_gateway_info;
    if (gw && gw.network_id) {
      links.push({ network: gw.network_id, gateway: true,
                   text: (gw.external_fixed_ips || []).map((f) => f.ip_address).join(" ") || "gateway" });
    }
    out.push({ kind: "router", id: r.id, name: r.name || r.id, sub: `router${r.status ? " · " + r.status : ""}`,
               links });
  }
  for (const p of data.ports) {
    if (!isVmPort(p)) continue;
    const fip = data.floatingips.filter((f) => f.port_id === p.id).map((f) => f.floating_ip_address);
    const host = p["binding:host_id"];
    out.push({ kind: "port", id: p.id, name: p.name || p.id.slice(0, 8),
               sub: `${host ? "on " + host : "unbound"}${fip.length ? " · fip " + fip.join(",") : ""}`,
               links: [{ network: p.network_id, text: (p.fixed_ips || []).map((f) => f.ip_address).join(" ") }],
               status: p.status });
  }
  return out;
}

/** Render `data` ({networks, subnets, ports, routers, floatingips}) into `container` as one SVG. */
export function renderGraph(container, data) {
  const nets = [...data.networks].sort((a, b) =>
    Number(b["router:external"] || false) - Number(a["router:external"] || false) || (a.name || "").localeCompare(b.name || ""));
  const col = new Map(nets.map((n, i) => [n.id, i]));
  const devs = devices(data).filter((d) => d.links.some((l) => col.has(l.network)) || d.kind === "router");
  const width = LEFT + Math.max(1, nets.length) * COL_W + 40;
  const height = TOP + Math.max(1, devs.length) * ROW_H + 30;
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "topology",
                         role: "img", "aria-label": "network topology" });
  const colX = (i) => LEFT + i * COL_W + COL_W / 2;

  nets.forEach((n, i) => {
    const ext = n["router:external"];
    const cidrs = data.subnets.filter((sn) => sn.network_id === n.id).map((sn) => sn.cidr);
    const g = s("g", { class: `net${ext ? " external" : ""}`, "data-id": n.id });
    g.append(s("rect", { x: colX(i) - 6, y: TOP - 12, width: 12, height: height - TOP, rx: 6 }));
    g.append(s("text", { x: colX(i), y: 18, "text-anchor": "middle", class: "net-name" }, n.name || n.id.slice(0, 8)));
    g.append(s("text", { x: colX(i), y: 34, "text-anchor": "middle", class: "net-sub" },
               cidrs.join(" ") || "no subnet"));
    if (ext) g.append(s("text", { x: colX(i), y: 48, "text-anchor": "middle", class: "net-sub" }, "external"));
    svg.append(g);
  });

  devs.forEach((d, row) => {
    const y = TOP + row * ROW_H + BOX_H / 2;
    const g = s("g", { class: `dev ${d.kind}${d.status ? " " + d.status.toLowerCase() : ""}`, "data-id": d.id });
    const reach = d.links.filter((l) => col.has(l.network)).map((l) => col.get(l.network));
    if (reach.length) {
      g.append(s("line", { x1: 10 + BOX_W, y1: y, x2: colX(Math.max(...reach)), y2: y, class: "wire" }));
    }
    for (const l of d.links) {
      if (!col.has(l.network)) continue;
      const x = colX(col.get(l.network));
      g.append(s("circle", { cx: x, cy: y, r: 5, class: l.gateway ? "dot gw" : "dot" }));
      g.append(s("text", { x: x + 8, y: y - 6, class: "addr" }, l.text));
    }
    g.append(s("rect", { x: 10, y: y - BOX_H / 2, width: BOX_W, height: BOX_H, rx: 4, class: "box" }));
    g.append(s("text", { x: 18, y: y - 2, class: "dev-name" }, d.name));
    g.append(s("text", { x: 18, y: y + 11, class: "dev-sub" }, d.sub));
    svg.append(g);
  });
  container.replaceChildren(svg);
}
