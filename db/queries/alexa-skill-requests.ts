import { sql, type CommonQueryMethods } from 'slonik';
import { recordFirstDelivery } from './webhook-deliveries';

/**
 * The ids of verified requests to the Alexa skill endpoint, so a second delivery of one is refused.
 * They share webhook_deliveries (and its housekeeping, a month) with the providers' delivery ids: far
 * longer than the hour after which Alexa's timestamp check refuses a request anyway, and shared by
 * every api-server process.
 */
const ALEXA_SKILL = 'alexa-skill';

/** True the first time a request id is seen. */
export function rememberAlexaRequest(db: CommonQueryMethods, requestId: string): Promise<boolean> {
  return recordFirstDelivery(db, { provider: ALEXA_SKILL, deliveryId: requestId, connectionId: null });
}

/** A request that could not be handled (a fault on our side) may be delivered again. */
export async function forgetAlexaRequest(db: CommonQueryMethods, requestId: string): Promise<void> {
  await db.query(sql.unsafe`DELETE FROM webhook_deliveries WHERE provider = ${ALEXA_SKILL} AND delivery_id = ${requestId}`);
}
