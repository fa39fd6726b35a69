import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

/**
 * A subscription a provider holds for one connection: a Google push channel, a Microsoft Graph
 * subscription, an Airbnb webhook registration. `verification_enc` holds the shared secret the provider
 * echoes back in each notification (channel token, clientState), encrypted like every other secret.
 */
const subscriptionRow = z.object({
  id: z.string().uuid(),
  connectionId: z.string().uuid(),
  provider: z.string(),
  kind: z.string(),
  externalId: z.string(),
  resource: z.string(),
  resourceId: z.string().nullable(),
  verificationEnc: z.string().nullable(),
  status: z.enum(['active', 'stopped', 'expired', 'failed']),
  expiresAt: z.number().nullable(),
  createdAt: z.number(),
  renewedAt: z.number().nullable(),
  stoppedAt: z.number().nullable(),
});
export type WebhookSubscriptionRow = z.infer<typeof subscriptionRow>;

const SUBSCRIPTION_COLUMNS = sql.fragment`
  id, connection_id AS "connectionId", provider, kind, external_id AS "externalId", resource, resource_id AS "resourceId",
  verification_enc AS "verificationEnc", status, expires_at AS "expiresAt", created_at AS "createdAt",
  renewed_at AS "renewedAt", stopped_at AS "stoppedAt"`;

export interface NewWebhookSubscription {
  id: string;
  connectionId: string;
  provider: string;
  kind: string;
  externalId: string;
  resource: string;
  resourceId: string | null;
  verificationEnc: string | null;
  expiresAt: Date | null;
}

export async function insertWebhookSubscription(db: CommonQueryMethods, row: NewWebhookSubscription): Promise<void> {
  await db.query(sql.unsafe`
    INSERT INTO webhook_subscriptions (id, connection_id, provider, kind, external_id, resource, resource_id, verification_enc, expires_at)
    VALUES (${row.id}, ${row.connectionId}, ${row.provider}, ${row.kind}, ${row.externalId}, ${row.resource}, ${row.resourceId},
            ${row.verificationEnc}, ${row.expiresAt ? sql.timestamp(row.expiresAt) : null})`);
}

export function findWebhookSubscription(db: CommonQueryMethods, provider: string, externalId: string): Promise<WebhookSubscriptionRow | null> {
  return db.maybeOne(sql.type(subscriptionRow)`
    SELECT ${SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE provider = ${provider} AND external_id = ${externalId}`);
}

export function activeWebhookSubscriptions(db: CommonQueryMethods, connectionId: string): Promise<readonly WebhookSubscriptionRow[]> {
  return db.any(sql.type(subscriptionRow)`
    SELECT ${SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions
    WHERE connection_id = ${connectionId} AND status = 'active' ORDER BY created_at`);
}

export async function markWebhookSubscriptionRenewed(db: CommonQueryMethods, id: string, expiresAt: Date): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE webhook_subscriptions SET expires_at = ${sql.timestamp(expiresAt)}, renewed_at = now() WHERE id = ${id}`);
}

/** Ends a subscription; its shared secret goes with it, since no genuine notification can follow. */
export async function endWebhookSubscription(db: CommonQueryMethods, id: string, status: 'stopped' | 'expired' | 'failed'): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE webhook_subscriptions SET status = ${status}, stopped_at = now(), verification_enc = NULL
    WHERE id = ${id} AND status = 'active'`);
}

/** Completes a subscription recorded before the provider was asked: the resource id and expiry the provider granted. */
export async function recordWebhookSubscriptionGranted(db: CommonQueryMethods, id: string, grant: { resourceId: string; expiresAt: Date }): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE webhook_subscriptions SET resource_id = ${grant.resourceId}, expires_at = ${sql.timestamp(grant.expiresAt)} WHERE id = ${id}`);
}

/** Completes a subscription recorded before the provider named it: the provider's id and the expiry it granted. */
export async function recordWebhookSubscriptionCreated(db: CommonQueryMethods, id: string, created: { externalId: string; expiresAt: Date }): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE webhook_subscriptions SET external_id = ${created.externalId}, expires_at = ${sql.timestamp(created.expiresAt)} WHERE id = ${id} AND status = 'active'`);
}
