// The REST API as the page uses it: same origin, the caller's token, Neutron's error messages.

const TOKEN_KEY = "tenantflow.token";

/** An API answer that was not 2xx; `message` is the NeutronError body's message when there is one. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
  },
};

async function errorOf(resp) {
  const text = await resp.text();
  try {
    const body = JSON.parse(text);
    const err = body.NeutronError || body.error;     // Neutron's body, or Keystone's
    if (err && err.message) return new ApiError(resp.status, err.message);
  } catch (_) { /* not JSON: fall through to the status line */ }
  return new ApiError(resp.status, `${resp.status} ${resp.statusText}${text ? ": " + text.slice(0, 200) : ""}`);
}

/** One API call; resolves to the parsed JSON body (null for 204), rejects with ApiError. */
export async function call(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (session.token) headers["X-Auth-Token"] = session.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!resp.ok) throw await errorOf(resp);
  if (resp.status === 204) return null;
  return resp.json();
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);
export const put = (path, body) => call("PUT", path, body);
export const del = (path) => call("DELETE", path);

/** Keystone v3 password authentication, project-scoped; returns {token, body} (X-Subject-Token). */
export async function login(user, password, project, domain) {
  const auth = {
    identity: { methods: ["password"],
                password: { user: { name: user, domain: { name: domain }, password } } },
    scope: { project: { name: project, domain: { name: domain } } },
  };
  const resp = await fetch("/identity/v3/auth/tokens", {
    method: "POST", headers: { "Content-Type": "application/json", "Accept": "application/json" },
    body: JSON.stringify({ auth }),
  });
  if (!resp.ok) throw await errorOf(resp);
  const token = resp.headers.get("X-Subject-Token");
  if (!token) throw new ApiError(resp.status, "the identity service returned no X-Subject-Token");
  return { token, body: await resp.json() };
}

/** The token's own description (user, project, roles): GET /identity/v3/auth/tokens. */
export async function whoami(token) {
  const resp = await fetch("/identity/v3/auth/tokens", {
    headers: { "X-Auth-Token": token, "X-Subject-Token": token, "Accept": "application/json" },
  });
  if (!resp.ok) throw await errorOf(resp);
  return resp.json();
}
