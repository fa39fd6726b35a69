// Request parsing and error pages of the fake Google's OAuth endpoints (fakes/google.ts).
import type { FastifyRequest } from 'fastify';
import type { Params } from './http-params';

// RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64.
function formDecode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}

export function clientCredentials(request: FastifyRequest, body: Params): { id?: string; secret?: string } {
  const header = request.headers.authorization;
  if (header === undefined || !/^basic /i.test(header)) return { id: body.client_id, secret: body.client_secret };
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return { id: formDecode(decoded) };
  return { id: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function errorPage(error: string, detail: string): string {
  return `<!doctype html><html><head><title>Error 400 (${error})</title></head>` +
    `<body><h1>Access blocked: authorization error</h1><p>Error 400: ${escapeHtml(error)}</p>` +
    `<p>${escapeHtml(detail)}</p></body></html>`;
}
