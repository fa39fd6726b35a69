import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { startFakeMicrosoft, type FakeMicrosoft } from '../../fakes/microsoft';
import { refreshNowUpdate } from '../../workflows/connection-messages';
import { connectMicrosoftCalendar, MICROSOFT_TEST_CLIENT, microsoftEnvironment } from '../helpers/microsoft';
import { connectGoogleCalendar, GOOGLE_TEST_CLIENT, startTestPlatform, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { startTemporalDevServer } from '../helpers/temporal';

const HOUR = 3600 * 1000;

interface Connected {
  connectionId: string;
  workflowId: string;
  userId: string;
}

/**
 * Issue 5, "what must be shown" 1: an operator finds connections by their search attributes through
 * the Temporal client (what Temporal Web's filter box does). Two providers, connections in different
 * states; Google tokens live an hour, Microsoft's two, so only Google's refresh is due within the hour.
 */
describe('connection workflows by search attribute (dev server)', () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let microsoft: FakeMicrosoft;
  let platform: TestPlatform;
  const connections: Record<'googleActive' | 'googleReauth' | 'googleDisconnected' | 'microsoftActive' | 'microsoftReauth', Connected> = {} as never;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle({ ...GOOGLE_TEST_CLIENT, accessTokenLifetimeSeconds: 3600 });
    microsoft = await startFakeMicrosoft({ ...MICROSOFT_TEST_CLIENT, accessTokenLifetimeSeconds: 2 * 3600 });
    platform = await startTestPlatform({ temporal, google, environment: microsoftEnvironment(microsoft) });

    for (const name of ['googleActive', 'googleReauth', 'googleDisconnected'] as const) {
      const { userId, sessionToken } = await platform.signUp(`${name}@example.com`);
      const { connectionId, workflowId } = (await connectGoogleCalendar(platform, sessionToken)).body as { connectionId: string; workflowId: string };
      connections[name] = { connectionId, workflowId, userId };
      if (name === 'googleDisconnected') {
        await waitForConnectionState(platform, workflowId, (state) => state.status === 'active');
        await fetch(`${platform.apiUrl}/api/v1/integrations/google-calendar/disconnect`, { method: 'POST', headers: { authorization: `Bearer ${sessionToken}` } });
        await platform.client.workflow.getHandle(workflowId).result();
      }
    }
    for (const name of ['microsoftActive', 'microsoftReauth'] as const) {
      const { userId, sessionToken } = await platform.signUp(`${name}@example.com`);
      const { connectionId, workflowId } = await connectMicrosoftCalendar(platform, microsoft, sessionToken);
      connections[name] = { connectionId, workflowId, userId };
    }
    for (const name of ['googleActive', 'googleReauth', 'microsoftActive', 'microsoftReauth'] as const) {
      await waitForConnectionState(platform, connections[name].workflowId, (state) => state.status === 'active');
    }

    // The provider has forgotten the grant; a forced refresh finds out.
    google.switches.invalidGrant = true;
    await expect(platform.client.workflow.getHandle(connections.googleReauth.workflowId).executeUpdate(refreshNowUpdate)).rejects.toThrow(WorkflowUpdateFailedError);
    google.switches.invalidGrant = false;
    microsoft.switches.invalidGrant = 70008;
    await expect(platform.client.workflow.getHandle(connections.microsoftReauth.workflowId).executeUpdate(refreshNowUpdate)).rejects.toThrow(WorkflowUpdateFailedError);
    microsoft.switches.invalidGrant = false;
    for (const name of ['googleReauth', 'microsoftReauth'] as const) {
      await waitForConnectionState(platform, connections[name].workflowId, (state) => state.status === 'needs_reauth');
    }
  });

  afterAll(async () => {
    await platform?.close();
    await microsoft?.close();
    await google?.close();
    await temporal?.teardown();
  });

  async function workflowIds(query: string): Promise<string[]> {
    const ids: string[] = [];
    for await (const execution of platform.client.workflow.list({ query })) ids.push(execution.workflowId);
    return ids.sort();
  }

  /** Visibility is eventually consistent on the dev server: ask again briefly until the answer settles. */
  async function expectQueryFinds(query: string, expected: Connected[]): Promise<void> {
    const want = expected.map((connection) => connection.workflowId).sort();
    const deadline = Date.now() + 10_000;
    let found = await workflowIds(query);
    while (JSON.stringify(found) !== JSON.stringify(want) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      found = await workflowIds(query);
    }
    expect(found, query).toEqual(want);
  }

  it('finds exactly the connections of a provider in a status', async () => {
    await expectQueryFinds('Provider = "google-calendar" AND ConnectionStatus = "needs_reauth"', [connections.googleReauth]);
    await expectQueryFinds('Provider = "microsoft-calendar" AND ConnectionStatus = "needs_reauth"', [connections.microsoftReauth]);
    await expectQueryFinds('Provider = "google-calendar" AND ConnectionStatus = "active"', [connections.googleActive]);
    await expectQueryFinds('ConnectionStatus = "disconnected"', [connections.googleDisconnected]);
    await expectQueryFinds('LastErrorKind = "invalid_grant"', [connections.googleReauth, connections.microsoftReauth]);
    await expectQueryFinds(`UserId = "${connections.microsoftActive.userId}"`, [connections.microsoftActive]);
  });

  it('finds the refreshes that are due, and only active connections have one', async () => {
    const inAnHour = new Date(Date.now() + HOUR).toISOString();
    const inThreeHours = new Date(Date.now() + 3 * HOUR).toISOString();
    await expectQueryFinds(`NextRefreshAt < "${inAnHour}"`, [connections.googleActive]);
    await expectQueryFinds(`NextRefreshAt < "${inThreeHours}"`, [connections.googleActive, connections.microsoftActive]);
    await expectQueryFinds(`NextRefreshAt < "${inThreeHours}" AND Provider = "microsoft-calendar"`, [connections.microsoftActive]);
  });

  it('carries the human facts in the memo', async () => {
    for (const [name, connection] of Object.entries(connections)) {
      const description = await platform.client.workflow.getHandle(connection.workflowId).describe();
      expect(description.memo, name).toEqual({
        connectionId: connection.connectionId,
        provider: name.startsWith('google') ? 'google-calendar' : 'microsoft-calendar',
        userId: connection.userId,
        firstStartedAt: description.startTime.toISOString(),
      });
    }
  });
});
