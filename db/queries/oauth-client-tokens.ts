import { sql, type CommonQueryMethods } from 'slonik';

/**
 * Ends every token a client holds: all refresh and access tokens, and codes not yet redeemed
 * (expired rather than marked used, so a late redemption is not mistaken for a replay). Run it,
 * with revokeClientGrants, in the transaction that marks the client revoked, so the client and
 * its tokens stop working together (access tokens are JWTs, but introspection reads their rows).
 */
export async function revokeClientTokens(db: CommonQueryMethods, clientId: string, reason: string): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE oauth_refresh_tokens SET revoked_at = now(), revoked_reason = ${reason}
    WHERE client_id = ${clientId} AND revoked_at IS NULL`);
  await db.query(sql.unsafe`UPDATE oauth_access_tokens SET revoked_at = now() WHERE client_id = ${clientId} AND revoked_at IS NULL`);
  await db.query(sql.unsafe`
    UPDATE oauth_authorization_codes SET expires_at = now()
    WHERE client_id = ${clientId} AND consumed_at IS NULL AND expires_at > now()`);
}
