import type { CommonQueryMethods } from 'slonik';
import { liveProviderConnections } from '../db/queries/connections';
import type { CredentialAdapter } from '../platform/providers/provider';

/**
 * The live connections whose grant a revocation for `providerAccountId` would end (design invariant 5,
 * issue 11 defect 4). Google and Airbnb end the app's whole grant for the provider account, so one PM
 * user's revocation would disconnect every other PM user connected to the same account; elsewhere a
 * revocation ends one token and nobody else is concerned. An unknown account names no one.
 */
export async function grantKeepers(
  db: CommonQueryMethods,
  adapter: CredentialAdapter,
  providerAccountId: string | null,
  exceptConnectionId?: string,
): Promise<string[]> {
  if (!adapter.revocationEndsAccountGrant || providerAccountId === null) return [];
  const live = await liveProviderConnections(db, adapter.id, providerAccountId);
  return live.filter((connection) => connection.id !== exceptConnectionId).map((connection) => connection.id);
}
