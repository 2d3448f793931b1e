"""Schemathesis hooks for `cargo xtask schemathesis` (tenant routes).

Every request goes to the tenant's host with its owner's bearer token. The fuzzer may take
that token away: it can make another user owner and then demote or delete ours, log out, end
the owner's sessions or change their password, and the contract revokes a token when its user
is changed or deleted or its session ends. From then on every answer would
be 401 and the rest of the run would test nothing. So the token comes from this provider: when
an answer is 401, Schemathesis asks for a token again (and replays the request once); if the
owner's token no longer works, this signs up a fresh tenant and goes on there. Requests whose
credentials Schemathesis left out on purpose (negative tests of security) get no token, but
still the tenant's host.

Two values in a request are valid or not by what happened before, not by their form, so a
positive test (schema-valid data, which must be accepted) can't draw them at random; the
document still declares their exact form, and negative tests still send broken ones:

- `cursor`: only one plinth signed is accepted. A positive request keeps a cursor plinth
  issued in this run (a stateful link passes them on) and otherwise leaves it out.
- `Idempotency-Key`: a key this tenant's user already sent gets the first request's answer
  (which may name a resource deleted since), or 422 `idempotency_key_reused` when the route or
  body differs. A positive request that would reuse a key gets a fresh one instead.

Set by the xtask: PLINTH_ST_BASE (http://127.0.0.1:PORT), PLINTH_ST_SLUG and PLINTH_ST_TOKEN
(the tenant it signed up, and its owner's token).
"""

import itertools
import os
import sys
import threading

import requests
import schemathesis

BASE = os.environ["PLINTH_ST_BASE"]
FIRST_SLUG = os.environ["PLINTH_ST_SLUG"]

_lock = threading.Lock()
_state = {"slug": FIRST_SLUG, "token": os.environ["PLINTH_ST_TOKEN"], "tenants": 1}
# Every `next_cursor` plinth answered with.
_issued_cursors = set()
# (tenant, Idempotency-Key) of every key sent.
_sent_keys = set()
_fresh = itertools.count()


def _host(slug):
    return f"{slug}.localhost"


def _is_owner(slug, token):
    r = requests.get(
        f"{BASE}/v1/me", headers={"Host": _host(slug), "Authorization": f"Bearer {token}"}, timeout=30
    )
    return r.status_code == 200 and r.json().get("user", {}).get("role") == "owner"


def _signup(slug):
    body = {
        "tenant_slug": slug,
        "tenant_name": "Schemathesis",
        "email": "owner@example.com",
        "password": "correct horse battery staple",
    }
    r = requests.post(f"{BASE}/v1/signup", headers={"Host": "localhost"}, json=body, timeout=30)
    if r.status_code != 201:
        raise RuntimeError(f"signup of {slug} answered {r.status_code}: {r.text}")
    return r.json()["access_token"]


@schemathesis.auth(refresh_interval=3000)
class OwnerToken:
    def get(self, case, context):
        with _lock:
            if not _is_owner(_state["slug"], _state["token"]):
                n = _state["tenants"] + 1
                slug = f"{FIRST_SLUG}-{n}"
                _state.update(slug=slug, token=_signup(slug), tenants=n)
                print(f"\n(hooks: the owner's token was revoked; going on as tenant {slug})", file=sys.stderr)
            return _state["token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


def _is_positive(case):
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode.is_positive


def _idempotency_header(headers):
    return next((name for name in headers if name.lower() == "idempotency-key"), None)


@schemathesis.hook
def before_call(context, case, kwargs):
    case.headers = case.headers or {}
    slug = _state["slug"]
    case.headers["Host"] = _host(slug)
    positive = _is_positive(case)
    with _lock:
        if positive and case.query and "cursor" in case.query and case.query["cursor"] not in _issued_cursors:
            del case.query["cursor"]
        name = _idempotency_header(case.headers)
        if name is not None:
            if positive and (slug, case.headers[name]) in _sent_keys:
                case.headers[name] = f"schemathesis-{next(_fresh)}"
            _sent_keys.add((slug, case.headers[name]))


@schemathesis.hook
def after_call(context, case, response):
    try:
        cursor = response.json().get("next_cursor")
    except (ValueError, AttributeError):
        return
    if isinstance(cursor, str):
        with _lock:
            _issued_cursors.add(cursor)
