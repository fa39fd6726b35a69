import { existsSync } from 'node:fs';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/eventually';
import { startSsoTestPlatform, type SsoTestPlatform } from '../helpers/sso-platform';
import { startTemporalDevServer } from '../helpers/temporal';

const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * A real headless Chromium clicks through single sign-on on the real platform (both servers over HTTP,
 * the worker and a Temporal dev server): the PM app's login page and its "Open Reality Portal" button
 * land on the portal's page with the user's name and mapped roles, Sign out there signs out of both;
 * and "Sign in with the PM app" on the portal goes through the PM login page and back. It also proves
 * the pages' CSP (no scripts; form-action allowing the redirects after each form) lets a browser do it:
 * no console errors.
 */
describe('single sign-on in a real browser', { timeout: 120_000 }, () => {
  let temporal: TestWorkflowEnvironment;
  let sso: SsoTestPlatform;
  let browser: Browser;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM_PATH)) {
      throw new Error(`Chromium not found at ${CHROMIUM_PATH}: install it (apt-get install -y chromium; .ci/run does) or set CHROMIUM_PATH. This test must not be skipped.`);
    }
    temporal = await startTemporalDevServer();
    sso = await startSsoTestPlatform(temporal);
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await sso?.close();
    await temporal?.teardown();
  });

  /** A fresh browser profile whose console errors (CSP violations among them) and page errors are collected. */
  async function openPage(): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });
    page.on('pageerror', (error) => errors.push(error.message));
    return { context, page, errors };
  }

  const roles = (page: Page) => page.locator('ul.roles li').allTextContents();
  const onPortal = (url: URL) => url.origin === sso.portalUrl && url.pathname === '/';

  it('PM login page, "Open Reality Portal", the portal page with name and mapped roles, then Sign out', async () => {
    const user = await sso.createPmUser(['owner']);
    const { context, page, errors } = await openPage();
    try {
      await page.goto(`${sso.platform.apiUrl}/sso/reality-portal`);
      expect(new URL(page.url()).pathname).toBe('/login');
      await page.fill('input[name="email"]', user.email);
      await page.fill('input[name="password"]', user.password);
      await Promise.all([page.waitForURL((url) => url.pathname === '/sso/reality-portal'), page.click('button[type="submit"]')]);

      await Promise.all([page.waitForURL(onPortal), page.click('button:has-text("Open Reality Portal")')]);
      expect(await page.textContent('strong')).toBe(user.displayName);
      // The flow's binding cookie was used up by the redemption.
      expect((await context.cookies()).map((cookie) => cookie.name)).not.toContain('portal_sso_binding');
      expect(await roles(page)).toEqual(['listing_editor', 'portal_admin']);

      // The page is at the portal's / already: what shows that the sign-out's redirect landed is the signed-out page.
      const signedOut = Promise.all([page.waitForResponse((response) => response.url() === `${sso.portalUrl}/logout`), page.waitForEvent('load')]);
      await page.click('button:has-text("Sign out")');
      const [logoutResponse] = await signedOut;
      expect(logoutResponse.status()).toBe(303);
      expect(onPortal(new URL(page.url()))).toBe(true);
      expect(await page.locator('a', { hasText: 'Sign in with the PM app' }).count()).toBe(1);
      expect(await page.locator('strong').count()).toBe(0);
      // The PM app's session followed (back-channel logout through the SSO session workflow).
      await eventually(async () => (await context.request.get(`${sso.platform.apiUrl}/api/v1/auth/me`)).status() === 401, 15_000, 'the PM session to end');
      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('"Sign in with the PM app" on the signed-out portal page: the PM login page, then back on the portal, signed in', async () => {
    const user = await sso.createPmUser(['agent']);
    const { context, page, errors } = await openPage();
    try {
      await page.goto(`${sso.portalUrl}/`);
      await Promise.all([
        page.waitForURL((url) => url.origin === sso.platform.apiUrl && url.pathname === '/login'),
        page.click('a:has-text("Sign in with the PM app")'),
      ]);
      await page.fill('input[name="email"]', user.email);
      await page.fill('input[name="password"]', user.password);
      // Login, authorization (first-party: no consent page), the portal's callback, the portal page.
      await Promise.all([page.waitForURL(onPortal), page.click('button[type="submit"]')]);
      expect(await page.textContent('strong')).toBe(user.displayName);
      expect(await roles(page)).toEqual(['listing_editor']);
      expect(await page.textContent('body')).toContain('OpenID Connect');
      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
