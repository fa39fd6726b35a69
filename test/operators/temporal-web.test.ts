import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { connectGoogleCalendar, GOOGLE_TEST_CLIENT, startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { freePort } from '../helpers/ports';
import { startTemporalDevServer } from '../helpers/temporal';

const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const UI_TIMEOUT_MS = 20_000;

/**
 * Issue 5, "what must be shown" 4: Temporal Web of the dev server, in a real headless Chromium, lists
 * a connection workflow and shows its custom search attributes. The screenshot goes to a temporary
 * folder outside the repository (its path is printed), never into it.
 */
describe('Temporal Web shows a connection workflow with its search attributes', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;
  let browser: Browser;
  let uiUrl: string;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM_PATH)) {
      throw new Error(
        `Chromium not found at ${CHROMIUM_PATH}: install it (apt-get install -y chromium; .ci/run does) or set CHROMIUM_PATH. This test must not be skipped.`,
      );
    }
    const uiPort = await freePort();
    uiUrl = `http://127.0.0.1:${uiPort}`;
    temporal = await startTemporalDevServer({ uiPort });
    google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
    platform = await startTestPlatform({ temporal, google });
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
  });

  it('finds the workflow in the list, opens it and shows Provider and ConnectionStatus', { timeout: 60_000 }, async () => {
    const { sessionToken } = await platform.signUp('web-view@example.com');
    const { workflowId } = (await connectGoogleCalendar(platform, sessionToken)).body as { workflowId: string };
    await waitForConnectionState(platform, workflowId, (state) => state.status === 'active');
    // The list reads visibility, which follows the workflow a moment later.
    const listed = async () => (await platform.client.workflow.count(`WorkflowId = "${workflowId}" AND ConnectionStatus = "active"`)).count > 0;
    for (const deadline = Date.now() + UI_TIMEOUT_MS; !(await listed()) && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 250));
    }

    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.setDefaultTimeout(UI_TIMEOUT_MS);
    const screenshotDir = await mkdtemp(path.join(tmpdir(), 'temporal-web-'));
    try {
      await page.goto(`${uiUrl}/namespaces/${platform.config.temporal.namespace}/workflows`);
      const link = page.getByRole('link', { name: workflowId, exact: true }).first();
      await link.waitFor();
      await Promise.all([page.waitForURL((url) => url.pathname.includes(encodeURIComponent(workflowId))), link.click()]);

      await page.getByTestId('search-attributes-tab').click();
      await page.waitForURL((url) => url.pathname.endsWith('/search-attributes'));
      await page.getByText('"ConnectionStatus"').first().waitFor();
      // The tab shows the attributes as JSON.
      const shown = (await page.locator('body').innerText()).replace(/\s+/g, ' ');
      expect(shown).toContain('"ConnectionStatus": "active"');
      expect(shown).toContain('"Provider": "google-calendar"');
      expect(shown).toMatch(/"NextRefreshAt": "\d{4}-\d\d-\d\dT/);
    } finally {
      const screenshot = path.join(screenshotDir, 'connection-workflow.png');
      await page.screenshot({ path: screenshot, fullPage: true });
      console.log(`Temporal Web screenshot: ${screenshot}`);
      await page.close();
    }
  });
});
