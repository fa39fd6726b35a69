import type { IssuedAccessToken, RefreshRecord } from '../../../fakes/token-endpoint-faults';

/** Refresh tokens the provider accepted more than once: two refreshes that both believed they owned the grant. */
export function refreshTokensUsedTwice(refreshes: readonly RefreshRecord[]): string[] {
  const successes = new Map<string, number>();
  for (const refresh of refreshes) if (refresh.succeeded) successes.set(refresh.presented, (successes.get(refresh.presented) ?? 0) + 1);
  return [...successes].filter(([, uses]) => uses > 1).map(([token, uses]) => `${token.slice(0, 8)}… ×${uses}`);
}

/** Per grant, in issue order: each access token with when its successor was issued (undefined for the newest). */
export function accessTokenChains(issued: readonly IssuedAccessToken[]): Map<string, Array<IssuedAccessToken & { successorIssuedAt?: number }>> {
  const chains = new Map<string, Array<IssuedAccessToken & { successorIssuedAt?: number }>>();
  for (const token of issued) {
    const chain = chains.get(token.grant) ?? [];
    const previous = chain.at(-1);
    if (previous) previous.successorIssuedAt = token.issuedAt;
    chain.push({ ...token });
    chains.set(token.grant, chain);
  }
  return chains;
}

/**
 * Whether the provider carried out a refresh with `storedRefreshToken` (and so rotated it away) that the
 * platform never stored: the answer, and with it the only live refresh token, was lost on the way.
 * Returns when that refresh happened, or undefined when every successor the provider issued was stored.
 */
export function lostRotation(refreshes: readonly RefreshRecord[], storedRefreshToken: string): number | undefined {
  return refreshes.find((refresh) => refresh.succeeded && refresh.presented === storedRefreshToken && refresh.rotatedTo !== undefined)?.at;
}
