import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const authorizationRow = z.object({
  id: z.string().uuid(),
  userId: z.string().uuid(),
  provider: z.string(),
  redirectUri: z.string(),
  connectionId: z.string().uuid().nullable(),
  expiresAt: z.number(),
  consumedAt: z.number().nullable(),
  exchangedAt: z.number().nullable(),
  codeEnc: z.string().nullable(),
  codeVerifierEnc: z.string().nullable(),
});
export type AuthorizationRow = z.infer<typeof authorizationRow>;

const AUTHORIZATION_COLUMNS = sql.fragment`
  id, user_id AS "userId", provider, redirect_uri AS "redirectUri", connection_id AS "connectionId",
  expires_at AS "expiresAt", consumed_at AS "consumedAt", exchanged_at AS "exchangedAt",
  code_enc AS "codeEnc", code_verifier_enc AS "codeVerifierEnc"`;

export async function insertAuthorization(
  db: CommonQueryMethods,
  row: { id: string; userId: string; provider: string; stateHash: string; codeVerifierEnc: string; redirectUri: string; expiresAt: Date },
): Promise<void> {
  await db.query(sql.unsafe`
    INSERT INTO integration_authorizations (id, user_id, provider, state_hash, code_verifier_enc, redirect_uri, expires_at)
    VALUES (${row.id}, ${row.userId}, ${row.provider}, ${row.stateHash}, ${row.codeVerifierEnc}, ${row.redirectUri}, ${sql.timestamp(row.expiresAt)})`);
}

export function findAuthorizationByStateHash(db: CommonQueryMethods, stateHash: string): Promise<AuthorizationRow | null> {
  return db.maybeOne(sql.type(authorizationRow)`SELECT ${AUTHORIZATION_COLUMNS} FROM integration_authorizations WHERE state_hash = ${stateHash}`);
}

export function findAuthorization(db: CommonQueryMethods, id: string): Promise<AuthorizationRow | null> {
  return db.maybeOne(sql.type(authorizationRow)`SELECT ${AUTHORIZATION_COLUMNS} FROM integration_authorizations WHERE id = ${id}`);
}

/** Single use even under concurrent callbacks: only one UPDATE can see consumed_at still empty. */
export async function consumeAuthorization(db: CommonQueryMethods, id: string): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    UPDATE integration_authorizations SET consumed_at = now()
    WHERE id = ${id} AND consumed_at IS NULL AND expires_at > now()`);
  return result.rowCount === 1;
}

export async function attachCodeToAuthorization(db: CommonQueryMethods, id: string, codeEnc: string, connectionId: string): Promise<void> {
  await db.query(sql.unsafe`UPDATE integration_authorizations SET code_enc = ${codeEnc}, connection_id = ${connectionId} WHERE id = ${id}`);
}

/**
 * Gives back an authorization whose code could not be handed to its workflow, so that the same callback,
 * sent again, completes it. The code stays: a hand-over whose answer was lost may have arrived after all.
 */
export async function releaseAuthorization(db: CommonQueryMethods, id: string): Promise<void> {
  await db.query(sql.unsafe`UPDATE integration_authorizations SET consumed_at = NULL WHERE id = ${id} AND exchanged_at IS NULL`);
}

/** Once exchanged, the code and verifier have no further use: they are wiped, not kept encrypted. */
export async function markAuthorizationExchanged(db: CommonQueryMethods, id: string): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE integration_authorizations SET exchanged_at = now(), code_enc = NULL, code_verifier_enc = NULL
    WHERE id = ${id}`);
}

export async function wipeAuthorizationSecrets(db: CommonQueryMethods, id: string): Promise<void> {
  await db.query(sql.unsafe`UPDATE integration_authorizations SET code_enc = NULL, code_verifier_enc = NULL WHERE id = ${id}`);
}

/** At disconnect: nothing the connection's authorizations held is needed any more. */
export async function wipeConnectionAuthorizations(db: CommonQueryMethods, connectionId: string): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE integration_authorizations SET code_enc = NULL, code_verifier_enc = NULL
    WHERE connection_id = ${connectionId} AND (code_enc IS NOT NULL OR code_verifier_enc IS NOT NULL)`);
}

/**
 * Whether the connection got tokens from an authorization the user started after the given second:
 * an event issued before that cannot concern the grant it produced. Compared by whole seconds (an
 * `iat`'s precision), so an event from the same second still counts.
 */
export async function authorizedAgainSince(db: CommonQueryMethods, connectionId: string, since: Date): Promise<boolean> {
  return db.exists(sql.unsafe`
    SELECT 1 FROM integration_authorizations
    WHERE connection_id = ${connectionId} AND exchanged_at IS NOT NULL
      AND date_trunc('second', created_at) > ${sql.timestamp(since)}`);
}

/** Whether the failure of this authorization is on record already (a retried activity audits once). */
export async function isAuthorizationFailureAudited(db: CommonQueryMethods, connectionId: string, authorizationId: string): Promise<boolean> {
  const row = await db.maybeOneFirst(sql.type(z.object({ found: z.boolean() }))`
    SELECT true AS found FROM audit_log
    WHERE connection_id = ${connectionId} AND action = 'IntegrationConnect' AND outcome = 'failure' AND details->>'authorizationId' = ${authorizationId}
    LIMIT 1`);
  return row !== null;
}

/**
 * The database's clock, in ms: a code's deadline is set by an api-server and checked by a worker, and
 * both hosts' clocks agree with it; an activity's own clock may be a test's simulated one.
 */
export async function databaseNowMs(db: CommonQueryMethods): Promise<number> {
  return db.oneFirst(sql.type(z.object({ now: z.number() }))`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now`);
}
