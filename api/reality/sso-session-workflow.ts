import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { FastifyBaseLogger } from 'fastify';
import type { DatabasePool } from '../../db/pool';
import { markSsoSessionWorkflowStarted } from '../../db/queries/portal-sessions';
import type { Config } from '../../platform/config';
import { portalSessionEndedSignal, ssoSessionWorkflowId, type SsoSessionWorkflowInput } from '../../workflows/sso-session-messages';
import { signalPmSessionsEnded, ssoSignalTarget } from '../sso-session-signals';

/** The SSO portal session a workflow keeps in step with its PM session. */
export interface SsoPortalSession {
  id: string;
  pmSessionId: string;
  pmUserId: string;
  /** Already the earlier of the portal session's and the PM session's expiry. */
  expiresAt: Date;
}

export function ssoSessionWorkflowStart(config: Config, session: SsoPortalSession) {
  const input: SsoSessionWorkflowInput = {
    portalSessionId: session.id,
    pmSessionId: session.pmSessionId,
    pmUserId: session.pmUserId,
    idleSeconds: config.sso.sessionIdleSeconds,
    expiresAt: session.expiresAt.getTime(),
    backchannelLogoutDeadlineSeconds: config.sso.backchannelLogoutDeadlineSeconds,
  };
  return { workflowId: ssoSessionWorkflowId(session.id), taskQueue: config.temporal.taskQueue, args: [input] as [SsoSessionWorkflowInput] };
}

/**
 * The SSO session workflows of one reality-server: started when an SSO sign-in opens a portal session,
 * and told when the user signs out at the portal. A sign-in answers without waiting for its start;
 * a start that fails is logged, and the session's next request that marks it as used (at most once a
 * minute) tries again, until portal_sessions.workflow_started_at says it runs. Meanwhile every portal
 * request checks the PM session (session sync (a)), so nothing depends on the workflow to be safe.
 * Closing aborts the calls in flight and waits until each has settled, before the Temporal connection
 * closes (a retry timer firing after the close would throw from the timer).
 */
export class SsoSessionWorkflows {
  private readonly pending = new Map<Promise<unknown>, AbortController>();

  constructor(private readonly services: { temporal: Client; db: DatabasePool; config: Config }) {}

  private track<T>(call: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    const running = call(controller.signal);
    this.pending.set(running, controller);
    void running.finally(() => this.pending.delete(running)).catch(() => undefined);
    return running;
  }

  private withDeadline<T>(signal: AbortSignal, call: () => Promise<T>): Promise<T> {
    const { temporal, config } = this.services;
    // SSO_TEMPORAL_DEADLINE_MS: Temporal's client retries an unreachable server with backoff and notices the deadline between attempts.
    return temporal.connection.withAbortSignal(signal, () => temporal.connection.withDeadline(Date.now() + config.sso.temporalDeadlineMs, call));
  }

  /** Starts the session's `sso-session:<id>` workflow (by name: its code belongs to the worker); never throws. */
  ensureStarted(session: SsoPortalSession, log: FastifyBaseLogger): Promise<boolean> {
    const { temporal, db, config } = this.services;
    const start = ssoSessionWorkflowStart(config, session);
    return this.track(async (signal) => {
      try {
        try {
          await this.withDeadline(signal, () =>
            // A session's workflow that has ended is never started again under the same id.
            temporal.workflow.start<(input: SsoSessionWorkflowInput) => Promise<unknown>>('ssoSessionWorkflow', { ...start, workflowIdReusePolicy: 'REJECT_DUPLICATE' }),
          );
        } catch (error) {
          if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
        }
        await markSsoSessionWorkflowStarted(db, session.id);
        return true;
      } catch (error) {
        log.warn({ err: error, workflowId: start.workflowId }, 'the SSO session workflow could not be started; a later request of the session tries again');
        return false;
      }
    });
  }

  /**
   * The user signed out at the portal, which ended the PM session too (platform/portal/sessions.ts
   * signOutPortalSession). The session's workflow is told, and sends the api-server its back-channel
   * logout; so are the workflows of the PM session's other portal sessions (another browser), which log
   * those out, when this sign-out ended it. A workflow that cannot be told is only logged: both servers
   * check the sessions on every request, and each workflow reads its pair on its own. Never throws.
   */
  portalSignedOut(session: { id: string; pmSessionId: string; pmSessionEnded: boolean }, log: FastifyBaseLogger): Promise<void> {
    const { temporal } = this.services;
    const workflowId = ssoSessionWorkflowId(session.id);
    const tellOwnWorkflow = async (signal: AbortSignal) => {
      try {
        await this.withDeadline(signal, () => temporal.workflow.getHandle(workflowId).signal(portalSessionEndedSignal, { reason: 'logout' }));
      } catch (error) {
        if (error instanceof WorkflowNotFoundError) log.info({ workflowId }, 'no SSO session workflow runs for the signed-out session');
        else log.warn({ err: error, workflowId }, 'could not signal the SSO session workflow of the signed-out session');
      }
    };
    const tellOtherWorkflows = (signal: AbortSignal) =>
      temporal.connection.withAbortSignal(signal, () => signalPmSessionsEnded(ssoSignalTarget(this.services, log), [session.pmSessionId], 'logout'));
    return this.track(async (signal) => {
      await Promise.all([tellOwnWorkflow(signal), session.pmSessionEnded ? tellOtherWorkflows(signal) : undefined]);
    });
  }

  async close(): Promise<void> {
    for (const controller of this.pending.values()) controller.abort();
    await Promise.allSettled(this.pending.keys());
  }
}
