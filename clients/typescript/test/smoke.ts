/**
 * The client against a running plinth: `cargo xtask client --check` compiles this with the
 * package's `tsc` and runs it with Node, `PLINTH_URL` naming the server (`http://127.0.0.1:PORT`)
 * and `PLINTH_BASE_DOMAIN` its base domain. Signs a tenant up, logs in, refreshes, creates and
 * lists a project, and checks that errors arrive as typed problem documents (and that an error
 * answer that is not one throws). Exits non-zero on the first failed assertion.
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

import { createPlinthClient, isProblem, type Problem, UnexpectedResponse } from "../src/index.js";

const baseUrl = required("PLINTH_URL");
const baseDomain = required("PLINTH_BASE_DOMAIN");
const slug = `ts-${randomUUID().slice(0, 8)}`;
const tenantHost = `${slug}.${baseDomain}`;
const email = `owner@${slug}.test`;
const password = "correct horse battery staple";

function required(name: string): string {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
}

/** `problem` as a problem document with `status` and `code` (it is one whenever `error` is set). */
function expectProblem(problem: Problem | undefined, status: number, code: string): Problem {
  assert.ok(problem !== undefined, `expected a ${status} ${code} problem, got a success`);
  assert.ok(isProblem(problem), `not a problem document: ${JSON.stringify(problem)}`);
  assert.equal(problem.status, status, JSON.stringify(problem));
  assert.equal(problem.code, code, JSON.stringify(problem));
  assert.equal(problem.type, "about:blank");
  return problem;
}

// Signup is on the platform host (the bare base domain).
const platform = createPlinthClient({ baseUrl, host: baseDomain });
const signup = await platform.POST("/v1/signup", {
  body: { tenant_slug: slug, tenant_name: "TypeScript smoke test", email, password },
});
assert.equal(signup.response.status, 201, JSON.stringify(signup.error));
assert.ok(signup.data);
assert.equal(signup.data.tenant.slug, slug);
assert.equal(signup.data.user.email, email);
assert.equal(signup.data.token_type, "Bearer");

// Everything else is on the tenant's host; the token is read before each request.
let token: string | undefined;
const tenant = createPlinthClient({ baseUrl, host: tenantHost, token: () => token });

const login = await tenant.POST("/v1/auth/login", { body: { email, password } });
assert.equal(login.response.status, 200, JSON.stringify(login.error));
assert.ok(login.data);
token = login.data.access_token;

const refreshed = await tenant.POST("/v1/auth/refresh", { body: { refresh_token: login.data.refresh_token } });
assert.equal(refreshed.response.status, 200, JSON.stringify(refreshed.error));
assert.ok(refreshed.data);
assert.notEqual(refreshed.data.refresh_token, login.data.refresh_token, "a refresh hands out a new refresh token");
token = refreshed.data.access_token;

const created = await tenant.POST("/v1/projects", { body: { name: "From TypeScript" } });
assert.equal(created.response.status, 201, JSON.stringify(created.error));
assert.ok(created.data);
assert.equal(created.data.name, "From TypeScript");
const id = created.data.id;

const listed = await tenant.GET("/v1/projects", { params: { query: { limit: 100 } } });
assert.equal(listed.response.status, 200, JSON.stringify(listed.error));
assert.ok(listed.data);
const found = listed.data.items.find((p) => p.id === id);
assert.ok(found, `project ${id} is not in the list`);
assert.equal(found.name, "From TypeScript");

// A name that is blank once trimmed breaks a validation rule: 422, with the field named.
const invalid = await tenant.POST("/v1/projects", { body: { name: "   " } });
assert.equal(invalid.response.status, 422);
assert.equal(invalid.response.headers.get("content-type"), "application/problem+json");
const validation = expectProblem(invalid.error, 422, "validation_failed");
assert.ok(validation.errors?.some((e) => e.field === "name"), JSON.stringify(validation));

// No token: 401 `unauthorized`.
const anonymous = createPlinthClient({ baseUrl, host: tenantHost });
const unauthorized = await anonymous.POST("/v1/projects", { body: { name: "Nobody's" } });
expectProblem(unauthorized.error, 401, "unauthorized");

// The tenant is the host's: another host names no tenant, whatever the token.
const elsewhere = createPlinthClient({ baseUrl, host: `no-such-${slug}.${baseDomain}`, token: () => token });
const missing = await elsewhere.GET("/v1/projects");
expectProblem(missing.error, 404, "tenant_not_found");

// An error answer that is not a problem document (here a proxy's page, from a fetch of the
// test's own) is not passed off as a `Problem`: the call throws.
const proxied = createPlinthClient({
  baseUrl,
  fetch: async () => new Response("<h1>502 Bad Gateway</h1>", { status: 502, headers: { "content-type": "text/html" } }),
});
await assert.rejects(proxied.GET("/v1/projects"), (e: unknown) => {
  assert.ok(e instanceof UnexpectedResponse, String(e));
  assert.equal(e.status, 502);
  assert.equal(e.contentType, "text/html");
  assert.equal(e.body, "<h1>502 Bad Gateway</h1>");
  return true;
});

console.log(`smoke test passed: tenant ${slug}, project ${id}`);
