/**
 * A `fetch` that sends a `Host` of its own choosing, for Node.
 *
 * plinth picks the tenant by the request's `Host`. Node's `fetch` (undici) drops a `Host`
 * header set on a request and sends the URL's host instead, and `*.localhost` names do not
 * resolve everywhere, so a script that reaches plinth at `http://127.0.0.1:8080` could not name
 * a tenant. This sends the request with `node:http` (or `node:https`), loaded on first use so
 * that the client stays usable where there is no Node (a browser sends the page's real host).
 */

import type { IncomingMessage } from "node:http";

/** Statuses whose responses have no body (a `Response` refuses one). */
const BODILESS = new Set([101, 204, 205, 304]);

/** A fetch that sends every request to its URL's address with `Host: host`. */
export function hostFetch(host: string): (request: Request) => Promise<Response> {
  return async (request) => {
    const url = new URL(request.url);
    const { request: send } = url.protocol === "https:" ? await import("node:https") : await import("node:http");
    const body = request.body === null ? undefined : new Uint8Array(await request.arrayBuffer());
    const headers: Record<string, string> = Object.fromEntries(request.headers);
    headers["host"] = host;
    if (body !== undefined) {
      headers["content-length"] = String(body.byteLength);
    }
    return new Promise<Response>((resolve, reject) => {
      const outgoing = send(url, { method: request.method, headers, signal: request.signal }, (incoming) => {
        read(incoming).then((bytes) => resolve(toResponse(request, incoming, bytes)), reject);
      });
      outgoing.on("error", reject);
      outgoing.end(body);
    });
  };
}

/** The whole body of `incoming`. */
async function read(incoming: IncomingMessage): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of incoming) {
    chunks.push(chunk as Uint8Array);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

function toResponse(request: Request, incoming: IncomingMessage, bytes: Uint8Array<ArrayBuffer>): Response {
  const headers = new Headers();
  const raw = incoming.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    headers.append(raw[i] ?? "", raw[i + 1] ?? "");
  }
  const status = incoming.statusCode ?? 0;
  const empty = BODILESS.has(status) || request.method === "HEAD";
  return new Response(empty ? null : bytes, { status, statusText: incoming.statusMessage ?? "", headers });
}
