import { sql, type CommonQueryMethods } from 'slonik';

/**
 * Records a delivery (or a security event's jti) the first time it is seen. Returns false for a repeat,
 * which the caller acknowledges without acting on it again.
 */
export async function recordFirstDelivery(
  db: CommonQueryMethods,
  delivery: { provider: string; deliveryId: string; connectionId: string | null },
): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    INSERT INTO webhook_deliveries (provider, delivery_id, connection_id)
    VALUES (${delivery.provider}, ${delivery.deliveryId}, ${delivery.connectionId})
    ON CONFLICT (provider, delivery_id) DO NOTHING`);
  return result.rowCount === 1;
}
