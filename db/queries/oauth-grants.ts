import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const grantRow = z.object({
  id: z.string().uuid(),
  userId: z.string().uuid(),
  clientId: z.string(),
  clientName: z.string(),
  scopes: z.array(z.string()),
  createdAt: z.number(),
  /** The last token issuance under the grant; null until the client first redeems a code. */
  lastUsedAt: z.number().nullable(),
  revokedAt: z.number().nullable(),
});
export type GrantRow = z.infer<typeof grantRow>;

const GRANT_SELECT = sql.fragment`
  SELECT g.id, g.user_id AS "userId", g.client_id AS "clientId", c.name AS "clientName", g.scopes,
         g.created_at AS "createdAt", g.last_used_at AS "lastUsedAt", g.revoked_at AS "revokedAt"
  FROM oauth_grants g JOIN oauth_clients c ON c.id = g.client_id`;

export function findLiveGrantFor(db: CommonQueryMethods, userId: string, clientId: string): Promise<GrantRow | null> {
  return db.maybeOne(sql.type(grantRow)`${GRANT_SELECT} WHERE g.user_id = ${userId} AND g.client_id = ${clientId} AND g.revoked_at IS NULL`);
}

export function findGrant(db: CommonQueryMethods, grantId: string): Promise<GrantRow | null> {
  return db.maybeOne(sql.type(grantRow)`${GRANT_SELECT} WHERE g.id = ${grantId}`);
}

export function listUserGrants(db: CommonQueryMethods, userId: string): Promise<readonly GrantRow[]> {
  return db.any(sql.type(grantRow)`${GRANT_SELECT} WHERE g.user_id = ${userId} AND g.revoked_at IS NULL ORDER BY g.created_at`);
}

/**
 * The user's live grant to the client, widened to cover `scopes`; created when there is none.
 * Consent is not use: last_used_at moves only when tokens are issued (touchGrant).
 */
export async function upsertGrant(db: CommonQueryMethods, userId: string, clientId: string, scopes: string[]): Promise<string> {
  return db.oneFirst(sql.type(z.object({ id: z.string().uuid() }))`
    INSERT INTO oauth_grants (user_id, client_id, scopes) VALUES (${userId}, ${clientId}, ${sql.array(scopes, 'text')})
    ON CONFLICT (user_id, client_id) WHERE revoked_at IS NULL
    DO UPDATE SET scopes = ARRAY(SELECT DISTINCT unnest(oauth_grants.scopes || EXCLUDED.scopes))
    RETURNING id`);
}

/** Records a use of the grant at `at`: called when a token is issued under it. */
export async function touchGrant(db: CommonQueryMethods, grantId: string, at: Date): Promise<void> {
  await db.query(sql.unsafe`UPDATE oauth_grants SET last_used_at = ${sql.timestamp(at)} WHERE id = ${grantId}`);
}

/** Returns true only for the call that revoked the grant. */
export async function markGrantRevoked(db: CommonQueryMethods, grantId: string): Promise<boolean> {
  const result = await db.query(sql.unsafe`UPDATE oauth_grants SET revoked_at = now() WHERE id = ${grantId} AND revoked_at IS NULL`);
  return result.rowCount === 1;
}

export async function revokeClientGrants(db: CommonQueryMethods, clientId: string): Promise<void> {
  await db.query(sql.unsafe`UPDATE oauth_grants SET revoked_at = now() WHERE client_id = ${clientId} AND revoked_at IS NULL`);
}
