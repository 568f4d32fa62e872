"""Built-in identity: Keystone v3's users, projects, roles, role assignments and tokens, Default domain only.

Why in the store: several API servers sharing one store (SQLite file or etcd) must accept each
other's tokens and see the same users, so identity records are store records like networks.
Why tokens are kept by their SHA-256: whoever can read the store (a backup, the change feed) must
not be able to replay a live token; the token itself is only ever in the client's hands.
Why bcrypt over SHA-256 of the password: bcrypt reads only 72 bytes (bcrypt 5 refuses longer
input), Keystone accepts longer passwords; a base64 SHA-256 digest is 44 bytes and has no NUL.
Why roles are looked up at validation: removing a role assignment, disabling a user or deleting a
project takes effect on the next request, as with Keystone's revocation events.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import bcrypt

from topology.model.context import ADMIN, MEMBER, READER, effective_roles
from topology.store import PROJECT, ROLE, ROLE_ASSIGNMENT, TOKEN, USER, Record, Store, retry_on_conflict

LOG = logging.getLogger(__name__)

DEFAULT_DOMAIN = {"id": "default", "name": "Default", "description": "The default domain",
                  "enabled": True}
DEFAULT_TOKEN_TTL = 3600          # s, Keystone's [token] expiration
PURGE_INTERVAL = 60.0             # s between sweeps of expired token records (per process)
BCRYPT_ROUNDS = 12
ADMIN_USER = "admin"
ADMIN_PROJECT = "admin"
BOOTSTRAP_ROLES = (ADMIN, MEMBER, READER)
MAX_NAME = 255


# ---- errors (Keystone's status, title and message) -----------------------------------------
class IdentityError(Exception):
    status = 500
    title = "Internal Server Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.status, "title": self.title, "message": self.message}}


class ValidationError(IdentityError):
    status, title = 400, "Bad Request"


class Unauthorized(IdentityError):
    status, title = 401, "Unauthorized"

    def __init__(self, message: str = "The request you have made requires authentication.") -> None:
        super().__init__(message)


class Forbidden(IdentityError):
    status, title = 403, "Forbidden"


class NotFound(IdentityError):
    status, title = 404, "Not Found"


class Conflict(IdentityError):
    status, title = 409, "Conflict"


class NotBootstrapped(Exception):
    """The store has no identity yet and no admin password was given: built-in auth cannot start."""


# ---- passwords and tokens ------------------------------------------------------------------
def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def check_password(password: str, hashed: str | None) -> bool:
    """Constant work whether or not the user exists (no user-enumeration by timing)."""
    if not hashed:
        bcrypt.checkpw(_prehash(password), _DUMMY_HASH)
        return False
    return bcrypt.checkpw(_prehash(password), hashed.encode("ascii"))


# bcrypt of b"x" at BCRYPT_ROUNDS, written out: hashing it at import cost every `tenantflow serve`
# start (and restart) ≈ 0.25-0.7 s before the API and the OpenFlow listener came up
_DUMMY_HASH = b"$2b$12$/Aqjh5x.nfJvVheF7/MzJOGUmcabfJt1oydDzqG/3Rz9wmwYVGuKO"


def token_key(token: str) -> str:
    """The store id of a token: its SHA-256, so the store never holds a usable token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def assignment_id(project_id: str, user_id: str) -> str:
    return f"{project_id}:{user_id}"


@dataclass(frozen=True)
class TokenInfo:
    """What a valid token stands for, recomputed at every validation."""
    token: str
    user: Record
    project: Record | None
    roles: tuple[Record, ...]          # effective roles (implied ones included), as records
    methods: tuple[str, ...]
    issued_at: float
    expires_at: float
    audit_ids: tuple[str, ...]

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(r["name"] for r in self.roles)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.role_names


def _new_id() -> str:
    return uuid.uuid4().hex


def _check_name(body: dict[str, Any], what: str) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise ValidationError(f"Invalid input for field 'name': a {what} needs a name of 1 to {MAX_NAME} "
                              "characters.")
    return name


def _check_domain(body: dict[str, Any]) -> None:
    domain = body.get("domain_id", "default")
    if domain not in (None, "default"):
        raise ValidationError(f"Only the Default domain ('default') is supported, not {domain!r}.")


def _check_bool(body: dict[str, Any], field: str) -> None:
    if field in body and not isinstance(body[field], bool):
        raise ValidationError(f"Invalid input for field '{field}': {body[field]!r} is not of type 'boolean'.")


def _check_str(body: dict[str, Any], field: str) -> None:
    if field in body and body[field] is not None and not isinstance(body[field], str):
        raise ValidationError(f"Invalid input for field '{field}': {body[field]!r} is not of type 'string'.")


class Identity:
    """Users, projects, roles, assignments and tokens over a Store. `clock` is injectable so
    tests can expire tokens without sleeping."""

    def __init__(self, store: Store, *, token_ttl: int = DEFAULT_TOKEN_TTL,
                 clock: Callable[[], float] = time.time, bcrypt_rounds: int = BCRYPT_ROUNDS) -> None:
        self.store = store
        self.token_ttl = token_ttl
        self.clock = clock
        self.bcrypt_rounds = bcrypt_rounds
        self._last_purge = 0.0

    # ---- bootstrap ---------------------------------------------------------------------
    @retry_on_conflict
    def bootstrap(self, admin_password: str | None, admin_project_id: str) -> bool:
        """First start: roles admin/member/reader, project `admin` (id = the noauth default
        project, so what noauth's admin made stays the admin's), user `admin` with the admin
        role there. Later starts change nothing. Returns True if it created the identity."""
        with self.store.transaction() as txn:
            if any(u["name"] == ADMIN_USER for u in txn.list(USER)):
                return False
            if not admin_password:
                raise NotBootstrapped("built-in auth needs the admin password at first start: set "
                                      "TENANTFLOW_ADMIN_PASSWORD or [identity] admin_password")
            roles = {r["name"]: r for r in txn.list(ROLE)}
            for name in BOOTSTRAP_ROLES:
                if name not in roles:
                    roles[name] = {"id": _new_id(), "name": name, "domain_id": None, "description": None,
                                   "options": {}}
                    txn.put(ROLE, roles[name])
            project = txn.get(PROJECT, admin_project_id)
            if project is None:
                project = self._project_record(admin_project_id, {"name": ADMIN_PROJECT,
                                                                  "description": "Bootstrap project"})
                txn.put(PROJECT, project)
            user = {"id": _new_id(), "name": ADMIN_USER, "domain_id": "default", "enabled": True,
                    "default_project_id": project["id"], "description": None, "email": None,
                    "_password": hash_password(admin_password, self.bcrypt_rounds), "options": {}}
            txn.put(USER, user)
            txn.put(ROLE_ASSIGNMENT, {"id": assignment_id(project["id"], user["id"]), "project_id": project["id"],
                                      "user_id": user["id"], "role_ids": [roles[ADMIN]["id"]]})
        LOG.info("identity bootstrapped: user %r with role admin in project %r (%s)", ADMIN_USER,
                 project["name"], project["id"])
        return True

    # ---- projects ----------------------------------------------------------------------
    @staticmethod
    def _project_record(pid: str, body: dict[str, Any]) -> Record:
        return {"id": pid, "name": body["name"], "domain_id": "default", "parent_id": "default",
                "description": body.get("description") or "", "enabled": body.get("enabled", True),
                "is_domain": False, "tags": list(body.get("tags") or []), "options": {}}

    def list_projects(self, filters: dict[str, str] | None = None) -> list[Record]:
        return _filtered(self.store.list(PROJECT), filters)

    def get_project(self, pid: str) -> Record:
        rec = self.store.get(PROJECT, pid)
        if rec is None:
            raise NotFound(f"Could not find project: {pid}.")
        return rec

    @retry_on_conflict
    def create_project(self, body: dict[str, Any]) -> Record:
        name = _check_name(body, "project")
        _check_domain(body)
        _check_bool(body, "enabled")
        _check_str(body, "description")
        if body.get("is_domain"):
            raise ValidationError("Projects acting as domains are not supported.")
        if body.get("parent_id") not in (None, "default"):
            raise ValidationError("Project hierarchies are not supported: parent_id must be the Default domain.")
        with self.store.transaction() as txn:
            if any(p["name"] == name for p in txn.list(PROJECT)):
                raise Conflict("Conflict occurred attempting to store project - it is not permitted to have "
                               f"two projects with the same name in the same domain : {name}.")
            rec = self._project_record(_new_id(), body)
            txn.put(PROJECT, rec)
        return rec

    @retry_on_conflict
    def update_project(self, pid: str, body: dict[str, Any]) -> Record:
        _check_bool(body, "enabled")
        _check_str(body, "description")
        _check_domain(body)
        with self.store.transaction() as txn:
            rec = txn.get(PROJECT, pid)
            if rec is None:
                raise NotFound(f"Could not find project: {pid}.")
            rec = dict(rec)
            if "name" in body:
                name = _check_name(body, "project")
                if any(p["name"] == name and p["id"] != pid for p in txn.list(PROJECT)):
                    raise Conflict(f"Conflict occurred attempting to store project - it is not permitted to "
                                   f"have two projects with the same name in the same domain : {name}.")
                rec["name"] = name
            for field in ("description", "enabled"):
                if field in body:
                    rec[field] = body[field]
            txn.put(PROJECT, rec)
        return rec

    @retry_on_conflict
    def delete_project(self, pid: str) -> None:
        """Its role assignments go too; tokens scoped to it stop validating (project gone)."""
        with self.store.transaction() as txn:
            if txn.get(PROJECT, pid) is None:
                raise NotFound(f"Could not find project: {pid}.")
            txn.delete(PROJECT, pid)
            for a in txn.list(ROLE_ASSIGNMENT):
                if a["project_id"] == pid:
                    txn.delete(ROLE_ASSIGNMENT, a["id"])

    # ---- users -------------------------------------------------------------------------
    def list_users(self, filters: dict[str, str] | None = None) -> list[Record]:
        return _filtered(self.store.list(USER), filters)

    def get_user(self, uid: str) -> Record:
        rec = self.store.get(USER, uid)
        if rec is None:
            raise NotFound(f"Could not find user: {uid}.")
        return rec

    def _user_fields(self, body: dict[str, Any], txn: Any) -> dict[str, Any]:
        _check_domain(body)
        _check_bool(body, "enabled")
        for field in ("description", "email", "default_project_id", "password"):
            _check_str(body, field)
        out: dict[str, Any] = {f: body[f] for f in ("description", "email", "enabled") if f in body}
        if body.get("default_project_id"):
            if txn.get(PROJECT, body["default_project_id"]) is None:
                raise ValidationError(f"Could not find project: {body['default_project_id']}.")
            out["default_project_id"] = body["default_project_id"]
        elif "default_project_id" in body:
            out["default_project_id"] = None
        if body.get("password") is not None:
            if not body["password"]:
                raise ValidationError("Invalid input for field 'password': the password must not be empty.")
            out["_password"] = hash_password(body["password"], self.bcrypt_rounds)
        return out

    @retry_on_conflict
    def create_user(self, body: dict[str, Any]) -> Record:
        name = _check_name(body, "user")
        with self.store.transaction() as txn:
            if any(u["name"] == name for u in txn.list(USER)):
                raise Conflict("Conflict occurred attempting to store user - Duplicate entry found with name "
                               f"{name} at domain ID default.")
            rec: Record = {"id": _new_id(), "name": name, "domain_id": "default", "enabled": True,
                           "default_project_id": None, "description": None, "email": None,
                           "_password": None, "options": {}}
            rec.update(self._user_fields(body, txn))
            txn.put(USER, rec)
        return rec

    @retry_on_conflict
    def update_user(self, uid: str, body: dict[str, Any]) -> Record:
        """A new password revokes the user's tokens, as Keystone does."""
        with self.store.transaction() as txn:
            rec = txn.get(USER, uid)
            if rec is None:
                raise NotFound(f"Could not find user: {uid}.")
            rec = dict(rec)
            if "name" in body:
                name = _check_name(body, "user")
                if any(u["name"] == name and u["id"] != uid for u in txn.list(USER)):
                    raise Conflict("Conflict occurred attempting to store user - Duplicate entry found with "
                                   f"name {name} at domain ID default.")
                rec["name"] = name
            rec.update(self._user_fields(body, txn))
            txn.put(USER, rec)
        if body.get("password") is not None:
            self.revoke_user_tokens(uid)
        return rec

    @retry_on_conflict
    def delete_user(self, uid: str) -> None:
        with self.store.transaction() as txn:
            if txn.get(USER, uid) is None:
                raise NotFound(f"Could not find user: {uid}.")
            txn.delete(USER, uid)
            for a in txn.list(ROLE_ASSIGNMENT):
                if a["user_id"] == uid:
                    txn.delete(ROLE_ASSIGNMENT, a["id"])
        self.revoke_user_tokens(uid)

    # ---- roles -------------------------------------------------------------------------
    def list_roles(self, filters: dict[str, str] | None = None) -> list[Record]:
        return _filtered(self.store.list(ROLE), filters)

    def get_role(self, rid: str) -> Record:
        rec = self.store.get(ROLE, rid)
        if rec is None:
            raise NotFound(f"Could not find role: {rid}.")
        return rec

    @retry_on_conflict
    def create_role(self, body: dict[str, Any]) -> Record:
        name = _check_name(body, "role")
        _check_str(body, "description")
        if body.get("domain_id") is not None:
            raise ValidationError("Domain-specific roles are not supported.")
        with self.store.transaction() as txn:
            if any(r["name"] == name for r in txn.list(ROLE)):
                raise Conflict(f"Conflict occurred attempting to store role - Duplicate entry found with name "
                               f"{name}.")
            rec: Record = {"id": _new_id(), "name": name, "domain_id": None,
                           "description": body.get("description"), "options": {}}
            txn.put(ROLE, rec)
        return rec

    @retry_on_conflict
    def delete_role(self, rid: str) -> None:
        with self.store.transaction() as txn:
            if txn.get(ROLE, rid) is None:
                raise NotFound(f"Could not find role: {rid}.")
            txn.delete(ROLE, rid)
            for a in txn.list(ROLE_ASSIGNMENT):
                if rid in a["role_ids"]:
                    rest = [r for r in a["role_ids"] if r != rid]
                    if rest:
                        txn.put(ROLE_ASSIGNMENT, dict(a, role_ids=rest))
                    else:
                        txn.delete(ROLE_ASSIGNMENT, a["id"])

    # ---- role assignments (user on project) --------------------------------------------
    def _assignment_parts(self, pid: str, uid: str, rid: str | None) -> None:
        self.get_project(pid)
        self.get_user(uid)
        if rid is not None:
            self.get_role(rid)

    @retry_on_conflict
    def grant(self, pid: str, uid: str, rid: str) -> None:
        self._assignment_parts(pid, uid, rid)
        with self.store.transaction() as txn:
            aid = assignment_id(pid, uid)
            rec = txn.get(ROLE_ASSIGNMENT, aid) or {"id": aid, "project_id": pid, "user_id": uid, "role_ids": []}
            if rid not in rec["role_ids"]:
                txn.put(ROLE_ASSIGNMENT, dict(rec, role_ids=[*rec["role_ids"], rid]))

    def check_grant(self, pid: str, uid: str, rid: str) -> None:
        self._assignment_parts(pid, uid, rid)
        rec = self.store.get(ROLE_ASSIGNMENT, assignment_id(pid, uid))
        if rec is None or rid not in rec["role_ids"]:
            raise NotFound(f"Could not find role assignment with role: {rid}, user or group: {uid}, "
                           f"project, domain, or system: {pid}.")

    @retry_on_conflict
    def revoke(self, pid: str, uid: str, rid: str) -> None:
        self.check_grant(pid, uid, rid)
        with self.store.transaction() as txn:
            rec = txn.get(ROLE_ASSIGNMENT, assignment_id(pid, uid))
            if rec is None or rid not in rec["role_ids"]:
                return
            rest = [r for r in rec["role_ids"] if r != rid]
            if rest:
                txn.put(ROLE_ASSIGNMENT, dict(rec, role_ids=rest))
            else:
                txn.delete(ROLE_ASSIGNMENT, rec["id"])

    def project_user_roles(self, pid: str, uid: str) -> list[Record]:
        self._assignment_parts(pid, uid, None)
        return self._roles_of(pid, uid, effective=False)

    def _roles_of(self, pid: str, uid: str, *, effective: bool) -> list[Record]:
        rec = self.store.get(ROLE_ASSIGNMENT, assignment_id(pid, uid))
        if rec is None:
            return []
        roles = self.store.list(ROLE)      # one read (a few records), not one per role
        by_id = {r["id"]: r for r in roles}
        direct = [by_id[rid] for rid in rec["role_ids"] if rid in by_id]
        if not effective:
            return direct
        by_name = {r["name"]: r for r in roles}
        names = effective_roles(r["name"] for r in direct)
        return [by_name[n] for n in names if n in by_name]

    def assignments(self, *, user_id: str | None = None, project_id: str | None = None,
                    role_id: str | None = None, effective: bool = False) -> list[dict[str, str]]:
        """Flat (user, project, role) triples as /v3/role_assignments lists them."""
        out: list[dict[str, str]] = []
        for a in self.store.list(ROLE_ASSIGNMENT):
            if (user_id and a["user_id"] != user_id) or (project_id and a["project_id"] != project_id):
                continue
            roles = self._roles_of(a["project_id"], a["user_id"], effective=effective)
            out.extend({"user_id": a["user_id"], "project_id": a["project_id"], "role_id": r["id"]}
                       for r in roles if not role_id or r["id"] == role_id)
        return out

    def user_projects(self, uid: str) -> list[Record]:
        """Enabled projects where the user holds a role (what a token can be scoped to)."""
        ids = {a["project_id"] for a in self.store.list(ROLE_ASSIGNMENT) if a["user_id"] == uid and a["role_ids"]}
        return [p for p in (self.store.get(PROJECT, pid) for pid in sorted(ids)) if p is not None]

    # ---- tokens ------------------------------------------------------------------------
    def authenticate(self, auth: Any) -> TokenInfo:
        """POST /v3/auth/tokens' `auth` object → a new token (password or token method, project
        scope or unscoped). Any credential failure is the same 401, as Keystone answers."""
        if not isinstance(auth, dict) or not isinstance(auth.get("identity"), dict):
            raise ValidationError("Expecting to find identity in auth.")
        identity = auth["identity"]
        methods = identity.get("methods")
        if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
            raise ValidationError("Expecting to find methods in identity.")
        now = self.clock()
        expires = now + self.token_ttl
        audit_chain: tuple[str, ...] = ()
        if methods == ["password"]:
            user = self._password_user(identity.get("password"))
        elif methods == ["token"]:
            parent = identity.get("token")
            if not isinstance(parent, dict) or not isinstance(parent.get("id"), str):
                raise ValidationError("Expecting to find id in token.")
            info = self.validate(parent["id"])
            if info is None:
                raise Unauthorized()
            user, expires = info.user, info.expires_at   # a token never outlives the one it came from
            audit_chain = info.audit_ids[:1]
        else:
            raise Unauthorized(f"Unsupported authentication method(s): {', '.join(methods)}; "
                               "supported: password, token.")
        project = self._scope(auth.get("scope"), user)
        roles: tuple[str, ...] = ()
        if project is not None:
            roles = tuple(r["id"] for r in self._roles_of(project["id"], user["id"], effective=False))
            if not roles:
                raise Unauthorized(f"User {user['id']} has no access to project {project['id']}.")
        token = "tf" + secrets.token_urlsafe(32)   # never starts with "-": `--os-token $T` must parse
        audit = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")
        rec = {"id": token_key(token), "user_id": user["id"], "project_id": project["id"] if project else None,
               "methods": list(methods), "issued_at": now, "expires_at": expires,
               "audit_ids": [audit, *audit_chain]}
        with self.store.transaction() as txn:
            txn.put(TOKEN, rec)
        self._maybe_purge(now)
        info = self._info(token, rec)
        if info is None:   # deleted between write and read: as if never issued
            raise Unauthorized()
        return info

    def _password_user(self, password: Any) -> Record:
        if not isinstance(password, dict) or not isinstance(password.get("user"), dict):
            raise ValidationError("Expecting to find user in password.")
        spec = password["user"]
        secret = spec.get("password")
        if not isinstance(secret, str):
            raise ValidationError("Expecting to find password in user.")
        user: Record | None = None
        if isinstance(spec.get("id"), str):
            user = self.store.get(USER, spec["id"])
        elif isinstance(spec.get("name"), str):
            self._check_scope_domain(spec.get("domain"), "user")
            user = next((u for u in self.store.list(USER) if u["name"] == spec["name"]), None)
        else:
            raise ValidationError("Expecting to find id or name in user.")
        if not check_password(secret, user.get("_password") if user else None) or user is None:
            raise Unauthorized()
        if not user.get("enabled", True):
            raise Unauthorized()
        return user

    @staticmethod
    def _check_scope_domain(domain: Any, what: str) -> None:
        """A name needs its domain; only Default exists (a wrong one is the generic 401)."""
        if not isinstance(domain, dict):
            raise ValidationError(f"Expecting to find domain in {what}.")
        if domain.get("id", "default") != "default" or domain.get("name", "Default") != "Default":
            raise Unauthorized()

    def _scope(self, scope: Any, user: Record) -> Record | None:
        """The project asked for, or the user's default project when none is asked (Keystone's
        rule), or None for an unscoped token."""
        if scope is None or scope == "unscoped":
            default = user.get("default_project_id")
            if default:
                project = self.store.get(PROJECT, default)
                if (project is not None and project.get("enabled", True)
                        and self._roles_of(project["id"], user["id"], effective=False)):
                    return project
            return None
        if not isinstance(scope, dict) or "project" not in scope:
            raise ValidationError("Only project scope is supported (scope.project with id, or name and domain).")
        spec = scope["project"]
        if not isinstance(spec, dict):
            raise ValidationError("Expecting to find id or name in project.")
        if isinstance(spec.get("id"), str):
            project = self.store.get(PROJECT, spec["id"])
        elif isinstance(spec.get("name"), str):
            self._check_scope_domain(spec.get("domain"), "project")
            project = next((p for p in self.store.list(PROJECT) if p["name"] == spec["name"]), None)
        else:
            raise ValidationError("Expecting to find id or name in project.")
        if project is None or not project.get("enabled", True):
            raise Unauthorized()
        return project

    def validate(self, token: str | None) -> TokenInfo | None:
        """The token's current meaning, or None: unknown, expired, revoked, its user or
        project gone or disabled, or no role left in its project."""
        if not token:
            return None
        rec = self.store.get(TOKEN, token_key(token))
        if rec is None:
            return None
        return self._info(token, rec)

    def _info(self, token: str, rec: Record) -> TokenInfo | None:
        if rec["expires_at"] <= self.clock():
            return None
        user = self.store.get(USER, rec["user_id"])
        if user is None or not user.get("enabled", True):
            return None
        project = None
        roles: list[Record] = []
        if rec["project_id"] is not None:
            project = self.store.get(PROJECT, rec["project_id"])
            if project is None or not project.get("enabled", True):
                return None
            roles = self._roles_of(project["id"], user["id"], effective=True)
            if not roles:
                return None
        return TokenInfo(token, user, project, tuple(roles), tuple(rec["methods"]), rec["issued_at"],
                         rec["expires_at"], tuple(rec["audit_ids"]))

    @retry_on_conflict
    def revoke_token(self, token: str) -> bool:
        with self.store.transaction() as txn:
            key = token_key(token)
            if txn.get(TOKEN, key) is None:
                return False
            txn.delete(TOKEN, key)
        return True

    def revoke_user_tokens(self, uid: str) -> None:
        self._delete_tokens([t["id"] for t in self.store.list(TOKEN) if t["user_id"] == uid])

    def _maybe_purge(self, now: float) -> None:
        """Drop expired token records now and then (they already fail validation)."""
        if now - self._last_purge < PURGE_INTERVAL:
            return
        self._last_purge = now
        try:
            self._delete_tokens([t["id"] for t in self.store.list(TOKEN) if t["expires_at"] <= now])
        except Exception:  # noqa: BLE001 — a failed sweep only delays clean-up; the token was issued
            LOG.exception("purging expired tokens failed; will retry in %.0f s", PURGE_INTERVAL)

    @retry_on_conflict
    def _delete_tokens(self, keys: list[str]) -> None:
        if not keys:
            return
        with self.store.transaction() as txn:
            for key in keys:
                if txn.get(TOKEN, key) is not None:
                    txn.delete(TOKEN, key)


def _filtered(records: list[Record], filters: dict[str, str] | None) -> list[Record]:
    """Keystone's list filters we support: name, enabled, domain_id (all Default)."""
    out = sorted(records, key=lambda r: (r.get("name") or "", r["id"]))
    for field, value in (filters or {}).items():
        if field == "name":
            out = [r for r in out if r.get("name") == value]
        elif field == "enabled":
            want = value.lower() not in ("0", "false", "no", "off")
            out = [r for r in out if bool(r.get("enabled", True)) == want]
        elif field == "domain_id":
            out = out if value == "default" else []
    return out


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))
