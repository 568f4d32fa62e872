// Tiny DOM helpers: every text from the API goes in as text nodes (never as HTML).

/** h("td", {class: "x"}, "text", node, ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Fill <table> with a header row and body rows (each a list of cells: text or nodes). */
export function fillTable(table, headers, rows, empty = "none") {
  table.replaceChildren(
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))
                               : h("tr", {}, h("td", { colspan: headers.length, class: "hint" }, empty))));
}

/** Replace a <select>'s options with [value, label] pairs, keeping the chosen value if it remains. */
export function fillSelect(select, options, emptyLabel) {
  const keep = select.value;
  const items = emptyLabel !== undefined ? [["", emptyLabel], ...options] : options;
  select.replaceChildren(...items.map(([v, label]) => h("option", { value: v }, label)));
  if (items.some(([v]) => v === keep)) select.value = keep;
}

/** "name (id8)" or the id when the object has no name. */
export function label(obj) {
  if (!obj) return "";
  return obj.name ? `${obj.name}` : obj.id;
}

export function shortId(id) {
  return id ? id.slice(0, 8) : "";
}
