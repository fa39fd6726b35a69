import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const refreshTokenRow = z.object({
  id: z.string().uuid(),
  familyId: z.string().uuid(),
  clientId: z.string(),
  userId: z.string().uuid(),
  grantId: z.string().uuid(),
  scopes: z.array(z.string()),
  expiresAt: z.number(),
  rotatedAt: z.number().nullable(),
  revokedAt: z.number().nullable(),
});
export type RefreshTokenRow = z.infer<typeof refreshTokenRow>;

const accessTokenRow = z.object({
  jti: z.string().uuid(),
  clientId: z.string(),
  userId: z.string().uuid().nullable(),
  grantId: z.string().uuid().nullable(),
  familyId: z.string().uuid().nullable(),
  scopes: z.array(z.string()),
  issuedAt: z.number(),
  expiresAt: z.number(),
  revokedAt: z.number().nullable(),
});
export type AccessTokenRow = z.infer<typeof accessTokenRow>;

export async function insertAccessToken(db: CommonQueryMethods, row: Omit<AccessTokenRow, 'revokedAt'>): Promise<void> {
  await db.query(sql.unsafe`
    INSERT INTO oauth_access_tokens (jti, client_id, user_id, grant_id, family_id, scopes, issued_at, expires_at)
    VALUES (${row.jti}, ${row.clientId}, ${row.userId}, ${row.grantId}, ${row.familyId}, ${sql.array(row.scopes, 'text')},
            ${sql.timestamp(new Date(row.issuedAt))}, ${sql.timestamp(new Date(row.expiresAt))})`);
}

/**
 * The PM session a grant's tokens began in (OpenID Connect `sid` and `auth_time`, epoch ms): a code carries
 * it, and the refresh tokens it leads to keep it, so each id_token names the sign-in behind it. Null parts
 * when unknown (a code issued outside /oauth/authorize, or a session since deleted).
 */
export interface TokenAuthentication {
  sessionId: string | null;
  authTime: number | null;
}

/** Answers the new row's id. */
export function insertRefreshToken(
  db: CommonQueryMethods,
  row: { tokenHash: string; familyId: string; clientId: string; userId: string; grantId: string; scopes: string[]; createdAt: Date; expiresAt: Date } & Partial<TokenAuthentication>,
): Promise<string> {
  return db.oneFirst(sql.type(z.object({ id: z.string().uuid() }))`
    INSERT INTO oauth_refresh_tokens (token_hash, family_id, client_id, user_id, grant_id, scopes, created_at, expires_at, session_id, auth_time)
    VALUES (${row.tokenHash}, ${row.familyId}, ${row.clientId}, ${row.userId}, ${row.grantId}, ${sql.array(row.scopes, 'text')},
            ${sql.timestamp(row.createdAt)}, ${sql.timestamp(row.expiresAt)}, ${row.sessionId ?? null},
            ${row.authTime == null ? null : sql.timestamp(new Date(row.authTime))})
    RETURNING id`);
}

const rotatableRefreshTokenRow = refreshTokenRow.extend({
  /** The rotation-grace envelope (voice clients): the answer that replaced this token, while it may be repeated. */
  successorResponseEnc: z.string().nullable(),
  successorResponseExpiresAt: z.number().nullable(),
  /** Copied to its successor: TokenAuthentication. */
  sessionId: z.string().uuid().nullable(),
  authTime: z.number().nullable(),
});
export type RotatableRefreshTokenRow = z.infer<typeof rotatableRefreshTokenRow>;

/**
 * Locks the row: two concurrent uses of one refresh token are decided one after the other. Lock the
 * token's grant first (lockGrant): every writer takes the grant, then its tokens, so none deadlocks.
 */
export function findRefreshTokenForUpdate(db: CommonQueryMethods, tokenHash: string): Promise<RotatableRefreshTokenRow | null> {
  return db.maybeOne(sql.type(rotatableRefreshTokenRow)`
    SELECT id, family_id AS "familyId", client_id AS "clientId", user_id AS "userId", grant_id AS "grantId", scopes,
           expires_at AS "expiresAt", rotated_at AS "rotatedAt", revoked_at AS "revokedAt",
           successor_response_enc AS "successorResponseEnc", successor_response_expires_at AS "successorResponseExpiresAt",
           session_id AS "sessionId", auth_time AS "authTime"
    FROM oauth_refresh_tokens WHERE token_hash = ${tokenHash} FOR UPDATE`);
}

/**
 * The rotation grace of voice clients: the token that replaced a rotated one, and its token
 * response (an IntegrationCrypto envelope bound to the rotated row) to repeat until `expiresAt`.
 */
export interface RefreshTokenSuccessor {
  id: string;
  responseEnc: string;
  expiresAt: Date;
}

export async function markRefreshTokenRotated(db: CommonQueryMethods, id: string, at: Date, successor?: RefreshTokenSuccessor): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE oauth_refresh_tokens SET rotated_at = ${sql.timestamp(at)}, successor_id = ${successor?.id ?? null},
      successor_response_enc = ${successor?.responseEnc ?? null},
      successor_response_expires_at = ${successor ? sql.timestamp(successor.expiresAt) : null}
    WHERE id = ${id}`);
}

/** The successor has been used (rotated in its turn): its predecessor may no longer repeat it. */
export async function wipeSuccessorResponse(db: CommonQueryMethods, successorId: string): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE oauth_refresh_tokens SET successor_response_enc = NULL, successor_response_expires_at = NULL
    WHERE successor_id = ${successorId} AND successor_response_enc IS NOT NULL`);
}

/**
 * Lock order of every transaction that writes tokens: the grant row first, then its codes and
 * tokens. Refresh, code exchange, grant revocation and client revocation all follow it, so they
 * never deadlock, and a revocation either waits for a refresh to commit (and then revokes what the
 * refresh issued, in a later statement) or runs first (and the refresh then finds the grant or its
 * token revoked). Answers whether the grant is revoked, whether its user is disabled (a disabled user's
 * grants stay, and work again once the user is enabled), and whether it is live (neither). FOR NO KEY
 * UPDATE leaves the FOR KEY SHARE locks of token inserts (foreign keys) unblocked; the user's row is not locked.
 */
export async function lockGrant(db: CommonQueryMethods, grantId: string): Promise<{ live: boolean; revoked: boolean; userDisabled: boolean } | null> {
  const row = await db.maybeOne(sql.type(z.object({ revokedAt: z.number().nullable(), userDisabled: z.boolean() }))`
    SELECT g.revoked_at AS "revokedAt", u.disabled_at IS NOT NULL AS "userDisabled"
    FROM oauth_grants g JOIN users u ON u.id = g.user_id WHERE g.id = ${grantId} FOR NO KEY UPDATE OF g`);
  if (!row) return null;
  const revoked = row.revokedAt !== null;
  return { live: !revoked && !row.userDisabled, revoked, userDisabled: row.userDisabled };
}

// A revoked token answers nothing, so the answer it could have repeated goes with it.
const WIPE_SUCCESSOR_RESPONSE = sql.fragment`successor_response_enc = NULL, successor_response_expires_at = NULL`;

/**
 * Revokes every refresh and access token of a family (one authorization code's descendants) as of
 * `at` (the database's now() when not given). Takes the family's grant lock first (re-entrant when
 * the caller holds it already), so a refresh of the same family cannot commit new tokens behind this
 * statement's snapshot.
 */
export async function revokeTokenFamily(
  db: CommonQueryMethods,
  family: { familyId: string; grantId: string },
  reason: string,
  at?: Date,
): Promise<void> {
  await lockGrant(db, family.grantId);
  const revokedAt = at ? sql.timestamp(at) : sql.fragment`now()`;
  await db.query(sql.unsafe`
    UPDATE oauth_refresh_tokens SET revoked_at = ${revokedAt}, revoked_reason = ${reason}, ${WIPE_SUCCESSOR_RESPONSE}
    WHERE family_id = ${family.familyId} AND revoked_at IS NULL`);
  await db.query(sql.unsafe`
    UPDATE oauth_access_tokens SET revoked_at = ${revokedAt} WHERE family_id = ${family.familyId} AND revoked_at IS NULL`);
}

/**
 * Revokes every token of a grant. Run it after markGrantRevoked in the same transaction: that
 * update holds the grant lock, so a racing refresh has either committed (its tokens are seen by
 * these later statements) or waits and then finds the grant revoked.
 */
export async function revokeGrantTokens(db: CommonQueryMethods, grantId: string, reason: string): Promise<void> {
  await lockGrant(db, grantId);
  await db.query(sql.unsafe`
    UPDATE oauth_refresh_tokens SET revoked_at = now(), revoked_reason = ${reason}, ${WIPE_SUCCESSOR_RESPONSE}
    WHERE grant_id = ${grantId} AND revoked_at IS NULL`);
  await db.query(sql.unsafe`UPDATE oauth_access_tokens SET revoked_at = now() WHERE grant_id = ${grantId} AND revoked_at IS NULL`);
}

/**
 * Ends every token a client holds: all refresh and access tokens, and codes not yet redeemed
 * (expired rather than marked used, so a late redemption is not mistaken for a replay). Run it,
 * with revokeClientGrants, in the transaction that marks the client revoked, so the client and
 * its tokens stop working together (access tokens are JWTs, but introspection reads their rows).
 * The client's grants are locked first (the common lock order), so a refresh or code exchange
 * racing it either commits before these statements run or waits and finds its grant revoked.
 */
export async function revokeClientTokens(db: CommonQueryMethods, clientId: string, reason: string): Promise<void> {
  await db.query(sql.unsafe`SELECT id FROM oauth_grants WHERE client_id = ${clientId} ORDER BY id FOR NO KEY UPDATE`);
  await db.query(sql.unsafe`
    UPDATE oauth_refresh_tokens SET revoked_at = now(), revoked_reason = ${reason}, ${WIPE_SUCCESSOR_RESPONSE}
    WHERE client_id = ${clientId} AND revoked_at IS NULL`);
  await db.query(sql.unsafe`UPDATE oauth_access_tokens SET revoked_at = now() WHERE client_id = ${clientId} AND revoked_at IS NULL`);
  await db.query(sql.unsafe`
    UPDATE oauth_authorization_codes SET expires_at = now()
    WHERE client_id = ${clientId} AND consumed_at IS NULL AND expires_at > now()`);
}

export async function revokeAccessToken(db: CommonQueryMethods, jti: string): Promise<void> {
  await db.query(sql.unsafe`UPDATE oauth_access_tokens SET revoked_at = now() WHERE jti = ${jti} AND revoked_at IS NULL`);
}

const codeRow = z.object({
  clientId: z.string(),
  userId: z.string().uuid(),
  grantId: z.string().uuid(),
  familyId: z.string().uuid(),
  redirectUri: z.string(),
  scopes: z.array(z.string()),
  /** NULL when the authorization request sent none (mayOmitPkce): then no code_verifier may be sent. */
  codeChallenge: z.string().nullable(),
  /** The OpenID Connect nonce of the authorization request, for the id_token. */
  nonce: z.string().nullable(),
  sessionId: z.string().uuid().nullable(),
  authTime: z.number().nullable(),
  expiresAt: z.number(),
  consumedAt: z.number().nullable(),
});
export type AuthorizationCodeRow = z.infer<typeof codeRow>;

export async function insertAuthorizationCode(
  db: CommonQueryMethods,
  row: Omit<AuthorizationCodeRow, 'consumedAt' | 'expiresAt' | 'nonce' | 'sessionId' | 'authTime'> &
    Partial<Pick<AuthorizationCodeRow, 'nonce' | 'sessionId' | 'authTime'>> & { codeHash: string; expiresAt: Date },
): Promise<void> {
  await db.query(sql.unsafe`
    INSERT INTO oauth_authorization_codes (code_hash, client_id, user_id, grant_id, family_id, redirect_uri, scopes, code_challenge, nonce,
                                           session_id, auth_time, expires_at)
    VALUES (${row.codeHash}, ${row.clientId}, ${row.userId}, ${row.grantId}, ${row.familyId}, ${row.redirectUri},
            ${sql.array(row.scopes, 'text')}, ${row.codeChallenge}, ${row.nonce ?? null}, ${row.sessionId ?? null},
            ${row.authTime == null ? null : sql.timestamp(new Date(row.authTime))}, ${sql.timestamp(row.expiresAt)})`);
}

/** The grant behind a code, read without locking: lock that grant before consuming the code. */
export function findAuthorizationCodeGrant(db: CommonQueryMethods, codeHash: string): Promise<string | null> {
  return db.maybeOneFirst(sql.type(z.object({ grantId: z.string().uuid() }))`
    SELECT grant_id AS "grantId" FROM oauth_authorization_codes WHERE code_hash = ${codeHash}`);
}

/**
 * Marks the code used and returns it with what it was before: a code whose `consumedAt` was
 * already set is a replay. The row lock makes concurrent redemptions see each other.
 */
export function consumeAuthorizationCode(db: CommonQueryMethods, codeHash: string, at: Date): Promise<AuthorizationCodeRow | null> {
  return db.maybeOne(sql.type(codeRow)`
    WITH previous AS (
      SELECT code_hash, consumed_at FROM oauth_authorization_codes WHERE code_hash = ${codeHash} FOR UPDATE
    )
    UPDATE oauth_authorization_codes AS code SET consumed_at = COALESCE(code.consumed_at, ${sql.timestamp(at)})
    FROM previous WHERE code.code_hash = previous.code_hash
    RETURNING code.client_id AS "clientId", code.user_id AS "userId", code.grant_id AS "grantId", code.family_id AS "familyId",
              code.redirect_uri AS "redirectUri", code.scopes, code.code_challenge AS "codeChallenge", code.nonce,
              code.session_id AS "sessionId", code.auth_time AS "authTime",
              code.expires_at AS "expiresAt", previous.consumed_at AS "consumedAt"`);
}

const accessTokenStatusRow = accessTokenRow.extend({
  grantRevokedAt: z.number().nullable(),
  clientRevokedAt: z.number().nullable(),
  /** The token's user is disabled: none of their tokens is live meanwhile. */
  userDisabled: z.boolean(),
});
export type AccessTokenStatusRow = z.infer<typeof accessTokenStatusRow>;

/** The access token's row with the revocation state of its grant and client, read in one query (introspection, revocation). */
export function findAccessTokenStatus(db: CommonQueryMethods, jti: string): Promise<AccessTokenStatusRow | null> {
  return db.maybeOne(sql.type(accessTokenStatusRow)`
    SELECT t.jti, t.client_id AS "clientId", t.user_id AS "userId", t.grant_id AS "grantId", t.family_id AS "familyId", t.scopes,
           t.issued_at AS "issuedAt", t.expires_at AS "expiresAt", t.revoked_at AS "revokedAt",
           g.revoked_at AS "grantRevokedAt", c.revoked_at AS "clientRevokedAt", u.disabled_at IS NOT NULL AS "userDisabled"
    FROM oauth_access_tokens t
    JOIN oauth_clients c ON c.id = t.client_id
    LEFT JOIN oauth_grants g ON g.id = t.grant_id
    LEFT JOIN users u ON u.id = t.user_id
    WHERE t.jti = ${jti}`);
}

const refreshTokenStatusRow = refreshTokenRow.extend({
  createdAt: z.number(),
  grantRevokedAt: z.number().nullable(),
  clientRevokedAt: z.number().nullable(),
  userDisabled: z.boolean(),
});
export type RefreshTokenStatusRow = z.infer<typeof refreshTokenStatusRow>;

/** A refresh token by its hash, without locking, with the revocation state of its grant and client. */
export function findRefreshTokenStatus(db: CommonQueryMethods, tokenHash: string): Promise<RefreshTokenStatusRow | null> {
  return db.maybeOne(sql.type(refreshTokenStatusRow)`
    SELECT t.id, t.family_id AS "familyId", t.client_id AS "clientId", t.user_id AS "userId", t.grant_id AS "grantId", t.scopes,
           t.created_at AS "createdAt", t.expires_at AS "expiresAt", t.rotated_at AS "rotatedAt", t.revoked_at AS "revokedAt",
           g.revoked_at AS "grantRevokedAt", c.revoked_at AS "clientRevokedAt", u.disabled_at IS NOT NULL AS "userDisabled"
    FROM oauth_refresh_tokens t
    JOIN oauth_clients c ON c.id = t.client_id
    JOIN oauth_grants g ON g.id = t.grant_id
    JOIN users u ON u.id = t.user_id
    WHERE t.token_hash = ${tokenHash}`);
}
