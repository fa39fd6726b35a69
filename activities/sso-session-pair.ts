import { applyMappedPortalRoles } from '../platform/sso/portal-roles';
import {
  endLivePortalSession,
  isSsoLogoutAudited,
  lockPmSession,
  lockPortalSession,
  readSsoSessionPairRow,
  revokeLivePmSession,
  type LockedSession,
  type SsoSessionPairIds,
} from '../db/queries/sso-session-pairs';
import type { ActivityDependencies } from './dependencies';

export type { SsoSessionPairIds } from '../db/queries/sso-session-pairs';

/** What the SSO session workflow learns about its pair: reasons, versions and times, never a token. */
export interface SsoSessionPairView {
  /** The portal session's ended_reason once it has ended ('gone' when the row is gone); null while it is live. */
  portalEnded: string | null;
  /** The PM session's ended_reason once it was revoked ('revoked' without one, 'gone' when the row is gone); null while it is live. */
  pmEnded: string | null;
  /** The PM user is disabled (or gone). */
  userDisabled: boolean;
  /** The later last use of the two sessions (epoch ms); null when neither is there. */
  lastActivityAt: number | null;
  /** The portal session's absolute expiry (epoch ms); null when it is gone. */
  portalExpiresAt: number | null;
  /** The PM session's absolute expiry (epoch ms); null when it is gone. */
  pmExpiresAt: number | null;
  /** The PM user's roles_version moved past the one the portal session applied. */
  rolesOutdated: boolean;
}

export interface SsoSessionPairEnding extends SsoSessionPairIds {
  /** The pair's workflow: its SsoLogout row (when it writes one) names it, and is written once. */
  workflowId: string;
  /** Who ended the pair (SsoLogout's initiatedBy). */
  initiatedBy: string;
  /** The ended_reason of the portal session, when this is to end it (a session that has ended keeps its own). */
  endPortal?: string;
  /** The ended_reason of the PM session, when this is to end it. */
  endPm?: string;
  /** Idle expiry: nothing ends when a live session of the pair was used after this (epoch ms). */
  unusedSince?: number;
  /** The back-channel logout that came first, if one did. */
  delivery?: {
    receiver: 'reality-server' | 'api-server';
    outcome: 'delivered' | 'refused' | 'undelivered';
    attempts: number | null;
    status: number | null;
  };
}

/** The pair's own records: what the two sessions look like now, the portal roles, and the end of both. */
export function createSsoSessionPairActivities({ db, audit, clock }: Pick<ActivityDependencies, 'db' | 'audit' | 'clock'>) {
  return {
    async readSsoSessionPair(input: SsoSessionPairIds): Promise<SsoSessionPairView> {
      const row = await readSsoSessionPairRow(db, input);
      const known = (...values: Array<number | null>) => values.filter((value): value is number => value !== null);
      const lastUses = known(row.portalLastSeenAt, row.pmLastSeenAt);
      return {
        portalEnded: !row.portalFound ? 'gone' : row.portalEndedAt !== null ? (row.portalEndedReason ?? 'ended') : null,
        pmEnded: !row.pmFound ? 'gone' : row.pmRevokedAt !== null ? (row.pmEndedReason ?? 'revoked') : null,
        userDisabled: !row.userFound || row.userDisabledAt !== null,
        lastActivityAt: lastUses.length > 0 ? Math.max(...lastUses) : null,
        portalExpiresAt: row.portalExpiresAt,
        pmExpiresAt: row.pmExpiresAt,
        rolesOutdated: row.portalFound && row.userFound && row.userRolesVersion !== row.portalRolesVersion,
      };
    },

    /** The PM user's mapped roles, into their portal account and its live SSO sessions (platform/sso/portal-roles.ts). Idempotent. */
    async applySsoSessionRoles(input: { pmUserId: string }): Promise<{ rolesVersion: number; changed: boolean } | null> {
      const applied = await applyMappedPortalRoles(db, audit, input.pmUserId, 'workflow');
      return applied ? { rolesVersion: applied.rolesVersion, changed: applied.changed } : null;
    },

    /**
     * Ends what is still live of the pair, in one transaction with both sessions locked: an idle expiry
     * cannot end a session that a request is using, and a retried attempt neither ends nor audits
     * anything twice. SsoLogout is audited (once per pair) only when this ended a session or a delivery
     * failed: a session that ended elsewhere (a sign-out, a receiver of the logout token, a portal
     * request) has its row from there. 'in_use' (idle expiry only): nothing changed.
     */
    async finishSsoSessionPair(input: SsoSessionPairEnding): Promise<'ended' | 'in_use'> {
      const now = clock();
      return db.transaction(async (transaction) => {
        // PM session before portal session: the order every path takes (disabling a user, portal requests).
        const pm = await lockPmSession(transaction, input.pmSessionId);
        const portal = await lockPortalSession(transaction, input.portalSessionId);
        const usedSince = (session: LockedSession | null) => session !== null && !session.ended && session.lastSeenAt > input.unusedSince!;
        if (input.unusedSince !== undefined && (usedSince(portal) || usedSince(pm))) return 'in_use';

        const endedHere: string[] = [];
        if (input.endPortal && (await endLivePortalSession(transaction, input.portalSessionId, input.endPortal, now))) endedHere.push('portal');
        if (input.endPm && (await revokeLivePmSession(transaction, input.pmSessionId, input.endPm, now))) endedHere.push('pm');
        const { delivery } = input;
        const deliveryFailed = delivery !== undefined && delivery.outcome !== 'delivered';
        if (endedHere.length === 0 && !deliveryFailed) return 'ended';
        if (await isSsoLogoutAudited(transaction, input.pmUserId, input.workflowId)) return 'ended';

        await audit.record(
          {
            action: 'SsoLogout',
            outcome: deliveryFailed ? 'failure' : 'success',
            actor: { type: 'system' },
            userId: input.pmUserId,
            details: {
              workflowId: input.workflowId,
              portalSessionId: input.portalSessionId,
              pmSessionId: input.pmSessionId,
              initiatedBy: input.initiatedBy,
              endedHere,
              ...(delivery ? { receiver: delivery.receiver, delivery: delivery.outcome, attempts: delivery.attempts, status: delivery.status } : {}),
            },
          },
          transaction,
        );
        return 'ended';
      });
    },
  };
}
