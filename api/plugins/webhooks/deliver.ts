import type { FastifyInstance } from 'fastify';
import { WorkflowNotFoundError, type WorkflowHandle } from '@temporalio/client';
import { recordFirstDelivery } from '../../../db/queries/webhook-deliveries';

export type DeliveryOutcome = 'delivered' | 'duplicate' | 'connection_gone';

/**
 * Hands a verified webhook to the workflow that owns its connection, at most once per delivery id.
 * The delivery is recorded in the same transaction that signals: if Temporal cannot take the signal,
 * nothing is recorded, the endpoint fails, and the provider's redelivery gets another chance.
 */
export async function deliverToConnection(
  app: FastifyInstance,
  delivery: { provider: string; deliveryId: string; connectionId: string; workflowId: string },
  send: (workflow: WorkflowHandle) => Promise<void>,
): Promise<DeliveryOutcome> {
  const { db, temporal } = app.services;
  return db.transaction(async (transaction) => {
    const first = await recordFirstDelivery(transaction, { provider: delivery.provider, deliveryId: delivery.deliveryId, connectionId: delivery.connectionId });
    if (!first) return 'duplicate';
    try {
      await send(temporal.workflow.getHandle(delivery.workflowId));
      return 'delivered';
    } catch (error) {
      // A connection whose workflow has ended has nothing left to sync; the delivery is still acknowledged.
      if (error instanceof WorkflowNotFoundError) return 'connection_gone';
      throw error;
    }
  });
}
