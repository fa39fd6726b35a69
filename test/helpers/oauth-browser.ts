import { randomUUID } from 'node:crypto';
import { createPkcePair, type PkcePair } from '../../platform/pkce';
import type { OAuthTestServer } from './oauth-server';

/** Undoes the HTML escaping of attribute values (platform/html.ts escapes with numeric entities). */
export function unescapeHtml(value: string): string {
  return value
    .replace(/&#(\d+);/g, (_match, code: string) => String.fromCharCode(Number(code)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function attribute(tag: string, name: string): string | undefined {
  const match = new RegExp(`\\s${name}="([^"]*)"`, 'i').exec(tag);
  return match ? unescapeHtml(match[1]!) : undefined;
}

export interface ParsedForm {
  action: string;
  method: string;
  /** Hidden and pre-filled inputs, by name. */
  fields: Record<string, string>;
  /** name=value of each submit button. */
  buttons: { name: string; value: string; label: string }[];
}

/** The first form of a page, read the way a browser would submit it. */
export function parseForm(page: string): ParsedForm {
  const form = /<form\b[^>]*>([\s\S]*?)<\/form>/i.exec(page);
  if (!form) throw new Error(`no form in page:\n${page}`);
  const openTag = /<form\b[^>]*>/i.exec(form[0])![0];
  const fields: Record<string, string> = {};
  for (const [input] of form[1]!.matchAll(/<input\b[^>]*>/gi)) {
    const name = attribute(input, 'name');
    if (name) fields[name] = attribute(input, 'value') ?? '';
  }
  const buttons = [...form[1]!.matchAll(/<button\b([^>]*)>([\s\S]*?)<\/button>/gi)].map((button) => ({
    name: attribute(button[0], 'name') ?? '',
    value: attribute(button[0], 'value') ?? '',
    label: button[2]!.trim(),
  }));
  return { action: attribute(openTag, 'action') ?? '', method: (attribute(openTag, 'method') ?? 'get').toLowerCase(), fields, buttons };
}

/** A minimal browser over fetch: keeps cookies, never follows redirects by itself. */
export class TestBrowser {
  readonly cookies = new Map<string, string>();

  constructor(private readonly base: string) {}

  private remember(response: Response): void {
    for (const header of response.headers.getSetCookie()) {
      const [pair, ...attributes] = header.split(';');
      const separator = pair!.indexOf('=');
      const name = pair!.slice(0, separator).trim();
      const value = pair!.slice(separator + 1).trim();
      const expired = attributes.some((attr) => {
        const [key, val] = attr.trim().split('=');
        if (key?.toLowerCase() === 'max-age') return Number(val) <= 0;
        if (key?.toLowerCase() === 'expires') return new Date(val ?? '').getTime() <= Date.now();
        return false;
      });
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  private cookieHeader(): Record<string, string> {
    if (this.cookies.size === 0) return {};
    return { cookie: [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ') };
  }

  url(path: string): string {
    return new URL(path, this.base).toString();
  }

  async get(path: string): Promise<Response> {
    const response = await fetch(this.url(path), { redirect: 'manual', headers: this.cookieHeader() });
    this.remember(response);
    return response;
  }

  async post(path: string, form: Record<string, string>): Promise<Response> {
    const response = await fetch(this.url(path), {
      method: 'POST',
      redirect: 'manual',
      headers: { ...this.cookieHeader(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
    this.remember(response);
    return response;
  }

  /** Submits the page's form as a browser would: hidden fields, the given inputs, and the pressed button. */
  async submit(page: string, inputs: Record<string, string> = {}, buttonValue?: string): Promise<Response> {
    const form = parseForm(page);
    const button = buttonValue === undefined ? undefined : form.buttons.find((candidate) => candidate.value === buttonValue);
    if (buttonValue !== undefined && !button) throw new Error(`no button with value ${buttonValue}`);
    const values = { ...form.fields, ...inputs, ...(button?.name ? { [button.name]: button.value } : {}) };
    return this.post(form.action, values);
  }

  /** Signs in through the login page (GET the form, POST it). */
  async signIn(email: string, password: string, returnTo?: string): Promise<Response> {
    const page = await (await this.get(`/login${returnTo ? `?${new URLSearchParams({ return_to: returnTo })}` : ''}`)).text();
    return this.submit(page, { email, password });
  }
}

export interface AuthorizeParams {
  clientId: string;
  redirectUri?: string;
  scope?: string;
  state?: string;
  pkce?: PkcePair;
  extra?: Record<string, string | undefined>;
}

/** authorizePath's `extra` for a request without PKCE, as Google's account linking sends it. */
export const WITHOUT_PKCE = { code_challenge: undefined, code_challenge_method: undefined };

/** /oauth/authorize?... with sensible defaults; `extra` overrides (undefined removes a parameter). */
export function authorizePath(params: AuthorizeParams): { path: string; pkce: PkcePair; state: string } {
  const pkce = params.pkce ?? createPkcePair();
  const state = params.state ?? `state-${Math.random().toString(36).slice(2)}`;
  const query: Record<string, string | undefined> = {
    response_type: 'code',
    client_id: params.clientId,
    redirect_uri: params.redirectUri ?? 'https://client.example/callback',
    scope: params.scope ?? 'properties:read',
    state,
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
    ...params.extra,
  };
  const search = new URLSearchParams(Object.entries(query).filter((entry): entry is [string, string] => entry[1] !== undefined));
  return { path: `/oauth/authorize?${search}`, pkce, state };
}

/** A new PM user, signed in through the login page of `server` in a fresh browser. */
export async function signedInBrowser(server: OAuthTestServer) {
  const user = await server.createUser(`user-${randomUUID()}@example.com`);
  const browser = new TestBrowser(server.url);
  const response = await browser.signIn(user.email, user.password);
  if (response.status !== 303) throw new Error(`sign-in answered ${response.status}`);
  return { browser, user };
}
