import { ApplicationFailure } from '@temporalio/activity';
import { findConnection, readConnectionSecrets, transitionConnectionStatus, wipeConnectionTokens } from '../db/queries/connections';
import type { RevocationOutcome } from '../platform/providers/provider';
import { connectionColumn } from '../db/encrypted-columns';
import { wipeConnectionAuthorizations } from '../db/queries/authorizations';
import { deleteCalendarEvents } from '../db/queries/calendar-events';
import { dropSyncCursor } from '../db/queries/sync';
import { providerActivityFailure, providerAdapter, type ActivityDependencies } from './dependencies';
import { FailureType } from './failure-types';
import { grantKeepers } from './shared-grant';

/**
 * `failed` is decided by the workflow once revocation was refused for good or has run out of attempts.
 * `skipped_shared_grant`: another live connection keeps the provider account's grant, which the
 * provider would end as a whole (defect 4 of issue 11); our tokens are wiped, the grant stays.
 */
export type DisconnectRevocationOutcome = RevocationOutcome | 'nothing_to_revoke' | 'skipped_shared_grant' | 'failed';

export interface DisconnectRequest {
  connectionId: string;
  requestedBy: { type: 'user' | 'operator' | 'system'; id?: string };
}

export function createDisconnectActivities({ db, crypto, providers, audit }: ActivityDependencies) {
  return {
    /** Asks the provider to revoke the grant (design invariant 5); every outcome is audited. */
    async revokeConnectionUpstream(request: DisconnectRequest): Promise<DisconnectRevocationOutcome> {
      await transitionConnectionStatus(db, request.connectionId, 'disconnecting', ['pending', 'active', 'needs_reauth']);
      const connection = await findConnection(db, request.connectionId);
      if (!connection) return 'nothing_to_revoke';
      const secrets = await readConnectionSecrets(db, request.connectionId);
      const sealed = secrets.refreshTokenEnc
        ? ({ value: secrets.refreshTokenEnc, column: 'refresh_token_enc' } as const)
        : secrets.accessTokenEnc
          ? ({ value: secrets.accessTokenEnc, column: 'access_token_enc' } as const)
          : undefined;
      if (!sealed) return 'nothing_to_revoke';

      const adapter = providerAdapter(providers, connection.provider);
      const keepers = await grantKeepers(db, adapter, connection.providerAccountId, request.connectionId);
      let outcome: DisconnectRevocationOutcome;
      if (keepers.length > 0) {
        outcome = 'skipped_shared_grant';
      } else {
        let token: string;
        try {
          token = crypto.decrypt(sealed.value, connectionColumn(request.connectionId, sealed.column));
        } catch (error) {
          // No later attempt can read it either: the workflow records the revocation as failed and wipes.
          throw ApplicationFailure.nonRetryable(error instanceof Error ? error.message : String(error), FailureType.credentialUnreadable);
        }
        try {
          outcome = await adapter.revoke(token);
        } catch (error) {
          // A refusal (invalid_client, any 4xx but 408 and 429) will not change: final at once, so the
          // connection does not sit in `disconnecting` for hours. Outages are retried by the workflow.
          throw providerActivityFailure(error);
        }
      }
      await audit.record({
        action: 'OAuthRevoke',
        outcome: 'success',
        actor: request.requestedBy,
        userId: connection.userId,
        provider: connection.provider,
        connectionId: request.connectionId,
        details: {
          revocation: outcome,
          ...(keepers.length > 0 ? { sharedGrantWith: keepers } : { revokedTokenKind: sealed.column === 'refresh_token_enc' ? 'refresh' : 'access' }),
        },
      });
      return outcome;
    },

    /** Disconnect's last step, whatever revocation achieved: no token survives in our database. */
    async wipeDisconnectedConnection(request: DisconnectRequest & { revocation: DisconnectRevocationOutcome; revocationError?: string }): Promise<void> {
      const connection = await findConnection(db, request.connectionId);
      if (!connection) return;
      await db.transaction(async (transaction) => {
        if (!(await wipeConnectionTokens(transaction, request.connectionId, request.revocation))) return;
        await wipeConnectionAuthorizations(transaction, request.connectionId);
        // A calendar we can no longer read must not keep blocking dates; reservations are bookings and stay.
        await deleteCalendarEvents(transaction, request.connectionId);
        await dropSyncCursor(transaction, request.connectionId);
        const entry = { actor: request.requestedBy, userId: connection.userId, provider: connection.provider, connectionId: request.connectionId };
        if (request.revocation === 'failed') {
          await audit.record({ ...entry, action: 'OAuthRevoke', outcome: 'failure', details: { reason: request.revocationError ?? 'unknown' } }, transaction);
        }
        await audit.record({ ...entry, action: 'IntegrationDisconnect', outcome: 'success', details: { revocation: request.revocation } }, transaction);
      });
    },
  };
}
