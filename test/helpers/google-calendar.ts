import { sql } from 'slonik';
import { z } from 'zod';
import type { FakeGoogle } from '../../fakes/google';
import type { connectionWorkflow } from '../../workflows/connection';
import { connectGoogleCalendar, type TestPlatform } from './platform';

/** A PM user connects the Google account `account` (a `sub`) of the fake Google; the callback was accepted. */
export async function connectGoogleAccount(platform: TestPlatform, google: FakeGoogle, email: string, account: string) {
  const { userId, sessionToken } = await platform.signUp(email);
  google.signInAs(account);
  let connected: Awaited<ReturnType<typeof connectGoogleCalendar>>;
  try {
    connected = await connectGoogleCalendar(platform, sessionToken);
  } finally {
    google.signInAs(undefined);
  }
  if (connected.status !== 202) throw new Error(`callback answered ${connected.status}`);
  const { connectionId, workflowId } = connected.body as { connectionId: string; workflowId: string };
  return { userId, sessionToken, connectionId, workflowId, handle: platform.client.workflow.getHandle<typeof connectionWorkflow>(workflowId) };
}

/** The Google account's live push channels at the fake. */
export function liveChannelsOf(google: FakeGoogle, account: string) {
  return google.liveChannels().filter((channel) => channel.account === account);
}

/** A property of the PM app owned by the user, so that the user's calendars block its dates. */
export function insertProperty(platform: TestPlatform, ownerUserId: string, name: string): Promise<string> {
  return platform.db.oneFirst(sql.type(z.object({ id: z.string() }))`
    INSERT INTO properties (owner_user_id, name) VALUES (${ownerUserId}, ${name}) RETURNING id`);
}

export function auditActions(platform: TestPlatform, connectionId: string): Promise<readonly string[]> {
  return platform.db.anyFirst(sql.type(z.object({ action: z.string() }))`
    SELECT action FROM audit_log WHERE connection_id = ${connectionId} ORDER BY id`);
}

/** How often the workflow's current run received a signal, from its history. */
export async function signalCount(platform: TestPlatform, workflowId: string, signalName: string): Promise<number> {
  const history = await platform.client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).filter((event) => event.workflowExecutionSignaledEventAttributes?.signalName === signalName).length;
}
