import { createHash } from 'node:crypto';
import type { FastifyReply } from 'fastify';

/** Escapes a value for HTML text and double-quoted attribute contexts. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"'`=]/g, (character) => `&#${character.charCodeAt(0)};`);
}

/** A tagged template that escapes every interpolated value unless it is already `SafeHtml`. */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0] ?? '';
  values.forEach((value, index) => {
    const rendered = Array.isArray(value)
      ? value.map((item) => (item instanceof SafeHtml ? item.value : escapeHtml(item))).join('')
      : value instanceof SafeHtml
        ? value.value
        : value === undefined || value === null || value === false
          ? ''
          : escapeHtml(value);
    out += rendered + (strings[index + 1] ?? '');
  });
  return new SafeHtml(out);
}

const STYLE = `
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1d2330}
main{max-width:28rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:12px;box-shadow:0 1px 4px rgba(0,0,0,.12)}
h1{font-size:1.35rem;margin:0 0 1rem}
ul{padding-left:1.2rem}
li{margin:.35rem 0}
label{display:block;margin:.75rem 0 .25rem;font-weight:600}
input[type=email],input[type=password]{width:100%;padding:.7rem;font-size:1rem;border:1px solid #b8bfcc;border-radius:8px}
.actions{display:flex;gap:.75rem;margin-top:1.5rem;flex-wrap:wrap}
button{flex:1;min-width:8rem;padding:.8rem 1rem;font-size:1rem;border-radius:8px;border:1px solid #1d4ed8;background:#1d4ed8;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1d4ed8}
.error{padding:.75rem;border-radius:8px;background:#fdecec;color:#8a1c1c}
.note{color:#5a6372;font-size:.9rem}
`;

const STYLE_HASH = `'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`;

/** A complete, mobile-friendly page with no scripts; its only style is the inline sheet above, allowed by hash. */
export function renderPage(title: string, body: SafeHtml): string {
  return `<!doctype html>${html`<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title}</title>
<style>${new SafeHtml(STYLE)}</style>
</head>
<body><main>${body}</main></body>
</html>`.value}`;
}

/**
 * Sends an HTML page with the headers every page of the authorization server carries: a CSP that
 * allows nothing but the inline style sheet (no scripts, no framing), X-Frame-Options, no caching,
 * no referrer. `formAction` lists where the page's form may submit to (and be redirected on to).
 */
export function sendHtml(reply: FastifyReply, statusCode: number, page: string, options: { formAction?: string[] | 'unrestricted' } = {}): FastifyReply {
  // Browsers apply form-action to the redirects after a submission too; the login form's redirects
  // lead on to whichever client the user is signing in for, so that page cannot name them in advance.
  const formAction =
    options.formAction === 'unrestricted'
      ? ''
      : ` form-action ${options.formAction && options.formAction.length > 0 ? options.formAction.join(' ') : "'none'"};`;
  return reply
    .code(statusCode)
    .header('content-type', 'text/html; charset=utf-8')
    .header(
      'content-security-policy',
      `default-src 'none'; style-src ${STYLE_HASH}; base-uri 'none';${formAction} frame-ancestors 'none'`,
    )
    .header('x-frame-options', 'DENY')
    .header('x-content-type-options', 'nosniff')
    .header('cache-control', 'no-store')
    .header('pragma', 'no-cache')
    .header('referrer-policy', 'no-referrer')
    .send(page);
}

/** A simple page that explains a problem and links nowhere (used when redirecting would be unsafe). */
export function errorPage(title: string, message: string): string {
  return renderPage(title, html`<h1>${title}</h1><p class="error">${message}</p>`);
}
