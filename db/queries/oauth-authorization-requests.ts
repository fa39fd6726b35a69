import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const requestRow = z.object({
  id: z.string().uuid(),
  clientId: z.string(),
  /** NULL (with csrfHash) while the request waits for the user to sign in. */
  userId: z.string().uuid().nullable(),
  redirectUri: z.string(),
  scopes: z.array(z.string()),
  state: z.string().nullable(),
  /** NULL for a client that may omit PKCE and sent no challenge (mayOmitPkce). */
  codeChallenge: z.string().nullable(),
  csrfHash: z.string().nullable(),
  /** OpenID Connect: carried to the code and the id_token. */
  nonce: z.string().nullable(),
  /** OpenID Connect, for every client: the oldest sign-in accepted (seconds), and the prompt values (space-separated). */
  maxAge: z.number().nullable(),
  prompt: z.string().nullable(),
  /** A request stored while the user signs in is satisfied only by a sign-in after this (prompt=login, max_age). */
  createdAt: z.number(),
  expiresAt: z.number(),
  decidedAt: z.number().nullable(),
});
export type AuthorizationRequestRow = z.infer<typeof requestRow>;

const REQUEST_COLUMNS = sql.fragment`
  id, client_id AS "clientId", user_id AS "userId", redirect_uri AS "redirectUri", scopes, state,
  code_challenge AS "codeChallenge", csrf_hash AS "csrfHash", nonce, max_age AS "maxAge", prompt,
  created_at AS "createdAt", expires_at AS "expiresAt", decided_at AS "decidedAt"`;

type NewRequest = Omit<AuthorizationRequestRow, 'id' | 'decidedAt' | 'createdAt' | 'expiresAt' | 'userId' | 'csrfHash'> & { expiresAt: Date };

/** A request shown to a signed-in user on the consent page, with the hash of that page's CSRF token. */
export function insertAuthorizationRequest(db: CommonQueryMethods, row: NewRequest & { userId: string; csrfHash: string }): Promise<string> {
  return db.oneFirst(sql.type(z.object({ id: z.string().uuid() }))`
    INSERT INTO oauth_authorization_requests (client_id, user_id, redirect_uri, scopes, state, code_challenge, csrf_hash, nonce, max_age, prompt, expires_at)
    VALUES (${row.clientId}, ${row.userId}, ${row.redirectUri}, ${sql.array(row.scopes, 'text')}, ${row.state}, ${row.codeChallenge},
            ${row.csrfHash}, ${row.nonce}, ${row.maxAge}, ${row.prompt}, ${sql.timestamp(row.expiresAt)})
    RETURNING id`);
}

/** A validated request kept while the user signs in (no user, no CSRF token yet). */
export function insertPendingAuthorizationRequest(db: CommonQueryMethods, row: NewRequest): Promise<string> {
  return db.oneFirst(sql.type(z.object({ id: z.string().uuid() }))`
    INSERT INTO oauth_authorization_requests (client_id, user_id, redirect_uri, scopes, state, code_challenge, csrf_hash, nonce, max_age, prompt, expires_at)
    VALUES (${row.clientId}, NULL, ${row.redirectUri}, ${sql.array(row.scopes, 'text')}, ${row.state}, ${row.codeChallenge},
            NULL, ${row.nonce}, ${row.maxAge}, ${row.prompt}, ${sql.timestamp(row.expiresAt)})
    RETURNING id`);
}

/** A pending request that is still open, without using it up (resuming may first need another sign-in). */
export function findPendingAuthorizationRequest(db: CommonQueryMethods, id: string): Promise<AuthorizationRequestRow | null> {
  return db.maybeOne(sql.type(requestRow)`
    SELECT ${REQUEST_COLUMNS} FROM oauth_authorization_requests
    WHERE id = ${id} AND user_id IS NULL AND decided_at IS NULL AND expires_at > now()`);
}

/** Uses up a pending request; only the one call that did it, while it was open, gets the row. */
export function claimPendingAuthorizationRequest(db: CommonQueryMethods, id: string): Promise<AuthorizationRequestRow | null> {
  return db.maybeOne(sql.type(requestRow)`
    UPDATE oauth_authorization_requests SET decided_at = now()
    WHERE id = ${id} AND user_id IS NULL AND decided_at IS NULL AND expires_at > now()
    RETURNING ${REQUEST_COLUMNS}`);
}

export function findAuthorizationRequest(db: CommonQueryMethods, id: string): Promise<AuthorizationRequestRow | null> {
  return db.maybeOne(sql.type(requestRow)`SELECT ${REQUEST_COLUMNS} FROM oauth_authorization_requests WHERE id = ${id}`);
}

/** Marks the request decided; true only for the one call that did it while the request was still open. */
export async function markAuthorizationRequestDecided(db: CommonQueryMethods, id: string): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    UPDATE oauth_authorization_requests SET decided_at = now()
    WHERE id = ${id} AND decided_at IS NULL AND expires_at > now()`);
  return result.rowCount === 1;
}
