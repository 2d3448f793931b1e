/**
 * plinth's API client: openapi-fetch, typed by the paths that `openapi-typescript` generates
 * from plinth's OpenAPI document (`src/schema.d.ts`; `cargo xtask client` regenerates it).
 *
 * Every call answers `{ data, error, response }`: `data` is the success body as the document
 * types it, `error` the error body, which plinth always sends as an RFC 9457 problem document
 * (`application/problem+json`) and is typed as {@link Problem}. An error answer that is not a
 * problem document (a proxy's HTML page) throws {@link UnexpectedResponse} instead, so that
 * `error` is never typed as something it is not.
 */

import createClient, { type Client, type Middleware } from "openapi-fetch";

import { hostFetch } from "./host.js";
import type { components, paths } from "./schema.js";

export type { components, operations, paths } from "./schema.js";
export { hostFetch } from "./host.js";

/** An RFC 9457 problem document: every error plinth answers with. Narrow on `status` and `code`. */
export type Problem = components["schemas"]["Problem"];

/** A client for every operation of plinth's API. */
export type PlinthClient = Client<paths>;

/** How to reach plinth, as whom. */
export interface PlinthClientOptions {
  /** Where plinth answers: `https://acme.example.com`, or `http://127.0.0.1:8080` with `host`. */
  baseUrl: string;
  /**
   * The host to name in `Host` when `baseUrl` does not: a tenant's (`acme.localhost`), or the
   * bare base domain for signup. Node only (see `hostFetch`); a browser sends the page's host.
   */
  host?: string;
  /** A bearer token (an access token or an API key), or a function asked before each request. */
  token?: string | (() => string | undefined);
  /** A `fetch` of your own (a proxy, retries, a test double); it takes precedence over `host`. */
  fetch?: (request: Request) => Promise<Response>;
}

/** An error answer that is not a problem document: not plinth's, or not as documented. */
export class UnexpectedResponse extends Error {
  constructor(
    readonly status: number,
    readonly contentType: string | null,
    readonly body: string,
  ) {
    super(`unexpected ${status} response (${contentType ?? "no content type"})`);
    this.name = "UnexpectedResponse";
  }
}

/** Whether `value` is a problem document (for a value of unknown origin, e.g. in a `catch`). */
export function isProblem(value: unknown): value is Problem {
  if (typeof value !== "object" || value === null) {
    return false;
  }
  const v = value as Record<string, unknown>;
  return typeof v["status"] === "number" && typeof v["code"] === "string" && typeof v["title"] === "string";
}

/** A client for plinth at `options.baseUrl`. */
export function createPlinthClient(options: PlinthClientOptions): PlinthClient {
  const fetch = options.fetch ?? (options.host === undefined ? undefined : hostFetch(options.host));
  const client = createClient<paths>({ baseUrl: options.baseUrl, ...(fetch === undefined ? {} : { fetch }) });
  const { token } = options;
  if (token !== undefined) {
    client.use(bearer(typeof token === "string" ? () => token : token));
  }
  client.use(problemsOnly);
  return client;
}

/** Sets `Authorization: Bearer …` unless the call set its own. */
function bearer(token: () => string | undefined): Middleware {
  return {
    onRequest({ request }) {
      const value = token();
      if (value !== undefined && !request.headers.has("authorization")) {
        request.headers.set("authorization", `Bearer ${value}`);
      }
      return request;
    },
  };
}

/** Lets an error answer through only as a problem document. */
const problemsOnly: Middleware = {
  async onResponse({ response }) {
    const type = response.headers.get("content-type");
    if (!response.ok && type?.split(";")[0]?.trim().toLowerCase() !== "application/problem+json") {
      throw new UnexpectedResponse(response.status, type, await response.text());
    }
    return undefined;
  },
};
