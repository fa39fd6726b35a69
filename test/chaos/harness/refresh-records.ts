import type { IssuedAccessToken, RefreshRecord } from '../../../fakes/token-endpoint-faults';

/** Refresh tokens the provider accepted more than once: two refreshes that both believed they owned the grant. */
export function refreshTokensUsedTwice(refreshes: readonly RefreshRecord[]): string[] {
  const successes = new Map<string, number>();
  for (const refresh of refreshes) if (refresh.succeeded) successes.set(refresh.presented, (successes.get(refresh.presented) ?? 0) + 1);
  return [...successes].filter(([, uses]) => uses > 1).map(([token, uses]) => `${token.slice(0, 8)}… ×${uses}`);
}

/**
 * Refresh tokens that started two chains: accepted more than once (a provider's grace allows that) and
 * more than one of the successors issued then went on, presented later or stored now. A successor
 * nobody went on with is an answer lost in flight, which the grace exists for; two that went on are
 * two writers holding one grant.
 */
export function forkedRefreshTokens(refreshes: readonly RefreshRecord[], stored: ReadonlySet<string>): string[] {
  const presented = new Set(refreshes.map((refresh) => refresh.presented));
  const successors = new Map<string, string[]>();
  for (const refresh of refreshes) {
    if (!refresh.succeeded || refresh.rotatedTo === undefined) continue;
    successors.set(refresh.presented, [...(successors.get(refresh.presented) ?? []), refresh.rotatedTo]);
  }
  return [...successors]
    .filter(([, issued]) => issued.filter((successor) => presented.has(successor) || stored.has(successor)).length > 1)
    .map(([token, issued]) => `${token.slice(0, 8)}… ×${issued.length}`);
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
