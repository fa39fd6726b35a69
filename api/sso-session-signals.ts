import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { CommonQueryMethods } from 'slonik';
import type { FastifyBaseLogger } from 'fastify';
import { livePortalSessionsOfPmSessions, livePortalSessionsOfPmUser } from '../db/queries/portal-sessions';
import {
  pmSessionEndedSignal,
  rolesChangedSignal,
  ssoSessionWorkflowId,
  type PmSessionEndedSignal,
} from '../workflows/sso-session-messages';

/** How long one signal may take; a portal request checks the PM session anyway (design: session sync (a)). */
const SIGNAL_DEADLINE_MS = 2000;

type SignalTarget = { temporal: Client; db: CommonQueryMethods; log: Pick<FastifyBaseLogger, 'warn'> };

/**
 * Tells the SSO session workflows of these portal sessions what happened on the PM side. It never
 * throws: the PM side's change is committed already, every portal request re-checks the PM session it
 * came from, and the workflow's own periodic check finds what a lost signal did not say. A workflow
 * that has ended is skipped.
 */
async function signalEach(target: SignalTarget, portalSessionIds: readonly string[], send: (handle: ReturnType<Client['workflow']['getHandle']>) => Promise<void>) {
  await Promise.all(
    portalSessionIds.map(async (portalSessionId) => {
      const handle = target.temporal.workflow.getHandle(ssoSessionWorkflowId(portalSessionId));
      try {
        await target.temporal.connection.withDeadline(Date.now() + SIGNAL_DEADLINE_MS, () => send(handle));
      } catch (error) {
        if (error instanceof WorkflowNotFoundError) return;
        target.log.warn({ err: error, portalSessionId }, 'could not signal the SSO session workflow; the portal re-checks on its next request');
      }
    }),
  );
}

/** The PM sessions ended (logout, RP-initiated logout, revocation): their portal sessions are logged out through the workflows. */
export async function signalPmSessionsEnded(target: SignalTarget, pmSessionIds: readonly string[], reason: PmSessionEndedSignal['reason']): Promise<void> {
  await signalEach(target, await livePortalSessionsOfPmSessions(target.db, pmSessionIds), (handle) => handle.signal(pmSessionEndedSignal, { reason }));
}

/**
 * The PM user was disabled: every portal session of theirs ends. `endedPortalSessionIds` are those the
 * disablement already ended in the database, whose workflows still run and are told as well.
 */
export async function signalPmUserDisabled(target: SignalTarget, pmUserId: string, endedPortalSessionIds: readonly string[] = []): Promise<void> {
  const portalSessionIds = new Set([...endedPortalSessionIds, ...(await livePortalSessionsOfPmUser(target.db, pmUserId))]);
  await signalEach(target, [...portalSessionIds], (handle) => handle.signal(pmSessionEndedSignal, { reason: 'user_disabled' }));
}

/** The PM user's roles (or a mapping they use) changed: the workflows apply the mapped roles to the portal now. */
export async function signalPmRolesChanged(target: SignalTarget, pmUserIds: readonly string[]): Promise<void> {
  for (const pmUserId of pmUserIds) {
    await signalEach(target, await livePortalSessionsOfPmUser(target.db, pmUserId), (handle) => handle.signal(rolesChangedSignal));
  }
}
