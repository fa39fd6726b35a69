import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { CommonQueryMethods } from 'slonik';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../platform/config';
import { livePortalSessionsOfPmSessions, livePortalSessionsOfPmUser } from '../db/queries/portal-sessions';
import {
  pmSessionEndedSignal,
  rolesChangedSignal,
  ssoSessionWorkflowId,
  type PmSessionEndedSignal,
} from '../workflows/sso-session-messages';

/**
 * What the functions below tell the SSO session workflows with. None of them throws, not even when the
 * database cannot name the portal sessions: the PM side's change is committed already, every portal
 * request re-checks the PM session it came from, and the workflow's own periodic check finds what a
 * lost signal did not say.
 */
export interface SignalTarget {
  temporal: Client;
  db: CommonQueryMethods;
  log: Pick<FastifyBaseLogger, 'warn'>;
  /** SSO_TEMPORAL_DEADLINE_MS: how long one signal may take. */
  deadlineMs: number;
}

/** The target of a server's request: its Temporal client and database, SSO_TEMPORAL_DEADLINE_MS, the request's log. */
export function ssoSignalTarget(services: { temporal: Client; db: CommonQueryMethods; config: Config }, log: SignalTarget['log']): SignalTarget {
  return { temporal: services.temporal, db: services.db, log, deadlineMs: services.config.sso.temporalDeadlineMs };
}

type WorkflowHandle = ReturnType<Client['workflow']['getHandle']>;

/** The live portal sessions a query names; none (logged) when the database cannot answer. */
async function portalSessionsOf(target: SignalTarget, query: () => Promise<readonly string[]>): Promise<readonly string[]> {
  try {
    return await query();
  } catch (error) {
    target.log.warn({ err: error }, 'could not look up the SSO session workflows to signal; the portal re-checks on its next request');
    return [];
  }
}

/** Tells the SSO session workflows of these portal sessions what happened on the PM side. A workflow that has ended is skipped. */
async function signalEach(target: SignalTarget, portalSessionIds: readonly string[], send: (handle: WorkflowHandle) => Promise<void>): Promise<void> {
  await Promise.all(
    portalSessionIds.map(async (portalSessionId) => {
      const handle = target.temporal.workflow.getHandle(ssoSessionWorkflowId(portalSessionId));
      try {
        await target.temporal.connection.withDeadline(Date.now() + target.deadlineMs, () => send(handle));
      } catch (error) {
        if (error instanceof WorkflowNotFoundError) return;
        target.log.warn({ err: error, portalSessionId }, 'could not signal the SSO session workflow; the portal re-checks on its next request');
      }
    }),
  );
}

/** The PM sessions ended (logout, RP-initiated logout, revocation): their portal sessions are logged out through the workflows. */
export async function signalPmSessionsEnded(target: SignalTarget, pmSessionIds: readonly string[], reason: PmSessionEndedSignal['reason']): Promise<void> {
  const portalSessionIds = await portalSessionsOf(target, () => livePortalSessionsOfPmSessions(target.db, pmSessionIds));
  await signalEach(target, portalSessionIds, (handle) => handle.signal(pmSessionEndedSignal, { reason }));
}

/**
 * The PM user was disabled: every portal session of theirs ends. `endedPortalSessionIds` are those the
 * disablement already ended in the database, whose workflows still run and are told as well.
 */
export async function signalPmUserDisabled(target: SignalTarget, pmUserId: string, endedPortalSessionIds: readonly string[] = []): Promise<void> {
  const live = await portalSessionsOf(target, () => livePortalSessionsOfPmUser(target.db, pmUserId));
  await signalEach(target, [...new Set([...endedPortalSessionIds, ...live])], (handle) => handle.signal(pmSessionEndedSignal, { reason: 'user_disabled' }));
}

/** The PM user's roles (or a mapping they use) changed: the workflows apply the mapped roles to the portal now. */
export async function signalPmRolesChanged(target: SignalTarget, pmUserIds: readonly string[]): Promise<void> {
  for (const pmUserId of pmUserIds) {
    const portalSessionIds = await portalSessionsOf(target, () => livePortalSessionsOfPmUser(target.db, pmUserId));
    await signalEach(target, portalSessionIds, (handle) => handle.signal(rolesChangedSignal));
  }
}
