import { randomUUID } from 'node:crypto';
import type { CommonQueryMethods } from 'slonik';
import { insertAuthorizationCode } from '../../db/queries/oauth-tokens';
import { upsertGrant } from '../../db/queries/oauth-grants';
import { hashBearerValue, randomToken } from '../secrets';

/** A new token family: every token one authorization code leads to shares it, so a replay can revoke them all. */
export function newTokenFamily(): string {
  return randomUUID();
}

export interface ApprovedAuthorization {
  clientId: string;
  userId: string;
  redirectUri: string;
  scopes: string[];
  /** The S256 challenge of the authorization request; null when the client may omit PKCE and sent none. */
  codeChallenge: string | null;
  /** OpenID Connect: the request's nonce and the PM session that signed in (its id is `sid`, its start `auth_time`, epoch ms). */
  nonce?: string | null;
  sessionId?: string | null;
  authTime?: number | null;
}

/**
 * Records the user's consent as a grant (widening an existing one) and issues a single-use
 * authorization code for it. The code is returned once and stored only as its hash.
 */
export async function issueAuthorizationCode(
  db: CommonQueryMethods,
  approved: ApprovedAuthorization,
  expiresAt: Date,
): Promise<{ code: string; grantId: string }> {
  const grantId = await upsertGrant(db, approved.userId, approved.clientId, approved.scopes);
  const code = randomToken();
  await insertAuthorizationCode(db, {
    codeHash: hashBearerValue(code),
    clientId: approved.clientId,
    userId: approved.userId,
    grantId,
    familyId: newTokenFamily(),
    redirectUri: approved.redirectUri,
    scopes: approved.scopes,
    codeChallenge: approved.codeChallenge,
    nonce: approved.nonce ?? null,
    sessionId: approved.sessionId ?? null,
    authTime: approved.authTime ?? null,
    expiresAt,
  });
  return { code, grantId };
}
