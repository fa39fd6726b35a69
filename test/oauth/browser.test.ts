import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { startOAuthTestServer, type OAuthTestServer } from '../helpers/oauth-server';
import { authorizePath } from '../helpers/oauth-browser';

const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * A real headless Chromium signs in on the login page, approves consent and lands on the client's
 * redirect URI (a tiny HTTP server on 127.0.0.1) with a code and the state it sent. It also proves
 * the pages' CSP (no scripts, form-action) lets a real browser complete the flow.
 */
describe('authorization code flow in a real browser', () => {
  let server: OAuthTestServer;
  let callbackServer: Server;
  let callbackUrl: string;
  let browser: Browser;
  const callbacks: URL[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM_PATH)) {
      throw new Error(
        `Chromium not found at ${CHROMIUM_PATH}: install it (apt-get install -y chromium; .ci/run does) or set CHROMIUM_PATH. This test must not be skipped.`,
      );
    }
    callbackServer = createServer((request, response) => {
      const url = new URL(request.url ?? '/', callbackUrl);
      // The browser also asks for /favicon.ico; only the redirect counts.
      if (url.pathname === '/callback') callbacks.push(url);
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      response.end('<!doctype html><title>Client callback</title><p>Back at the client.</p>');
    });
    await new Promise<void>((resolve) => callbackServer.listen(0, '127.0.0.1', resolve));
    callbackUrl = `http://127.0.0.1:${(callbackServer.address() as AddressInfo).port}/callback`;
    server = await startOAuthTestServer();
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await new Promise<void>((resolve) => (callbackServer ? callbackServer.close(() => resolve()) : resolve()));
  });

  it('signs in, approves consent and lands on the redirect URI with a code and the state', async () => {
    const { client } = await server.createClient({ name: 'Browser test app', redirectUris: [callbackUrl] });
    const user = await server.createUser('browser@example.com');
    const { path, state, pkce } = authorizePath({ clientId: client.id, redirectUri: callbackUrl, scope: 'properties:read reservations:read' });

    const context = await browser.newContext();
    const page = await context.newPage();
    const consoleErrors: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
    try {
      await page.goto(`${server.url}${path}`);
      expect(new URL(page.url()).pathname).toBe('/login');
      await page.fill('input[name="email"]', user.email);
      await page.fill('input[name="password"]', user.password);
      await Promise.all([page.waitForURL((url) => url.pathname === '/oauth/authorize'), page.click('button[type="submit"]')]);

      expect(await page.textContent('h1')).toContain('Browser test app');
      expect(await page.textContent('body')).toContain('See your properties and their details');
      await Promise.all([page.waitForURL((url) => url.toString().startsWith(callbackUrl)), page.click('button[value="approve"]')]);

      const landed = new URL(page.url());
      expect(`${landed.origin}${landed.pathname}`).toBe(callbackUrl);
      expect(landed.searchParams.get('code')).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(landed.searchParams.get('state')).toBe(state);
      expect(landed.searchParams.get('iss')).toBe(server.url);
      expect(await page.textContent('p')).toBe('Back at the client.');
      expect(callbacks).toHaveLength(1);
      expect(callbacks[0]!.searchParams.get('code')).toBe(landed.searchParams.get('code'));
      // No CSP violation (inline style allowed by hash, form-action allowing the redirect).
      expect(consoleErrors).toEqual([]);

      const { tokens } = await server.app.authorizationServer.tokenEndpoint.authorizationCode(
        { client, origin: { ip: '127.0.0.1' } },
        { code: landed.searchParams.get('code')!, redirectUri: callbackUrl, codeVerifier: pkce.verifier },
      );
      expect(tokens.token_type).toBe('Bearer');
    } finally {
      await context.close();
    }

    // Signing in again in a fresh browser: the grant covers the scopes, so the login POST's redirect chain
    // (login -> authorize -> client) goes straight to the client, which the login page's CSP must allow.
    const second = await browser.newContext();
    try {
      const again = authorizePath({ clientId: client.id, redirectUri: callbackUrl, scope: 'properties:read' });
      const page2 = await second.newPage();
      await page2.goto(`${server.url}${again.path}`);
      await page2.fill('input[name="email"]', user.email);
      await page2.fill('input[name="password"]', user.password);
      await Promise.all([page2.waitForURL((url) => url.toString().startsWith(callbackUrl)), page2.click('button[type="submit"]')]);
      const landed = new URL(page2.url());
      expect(landed.searchParams.get('code')).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(landed.searchParams.get('state')).toBe(again.state);
    } finally {
      await second.close();
    }
  });
});
