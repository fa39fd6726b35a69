import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

/** What voice commands read of a user's data: their properties, and who arrives, leaves or stays on one day. */

const guestMovementRow = z.object({
  propertyName: z.string(),
  guestName: z.string().nullable(),
  movement: z.enum(['check_in', 'check_out']),
});
export type GuestMovement = z.infer<typeof guestMovementRow>;

/** Confirmed check-ins and check-outs on `date` (YYYY-MM-DD) at the properties `ownerUserId` owns. */
export function guestMovementsOn(db: CommonQueryMethods, ownerUserId: string, date: string): Promise<readonly GuestMovement[]> {
  return db.any(sql.type(guestMovementRow)`
    SELECT p.name AS "propertyName", r.guest_name AS "guestName",
           CASE WHEN r.check_in = ${date}::date THEN 'check_in' ELSE 'check_out' END AS movement
    FROM reservations r JOIN properties p ON p.id = r.property_id
    WHERE p.owner_user_id = ${ownerUserId} AND r.status = 'confirmed'
      AND (r.check_in = ${date}::date OR r.check_out = ${date}::date)
    ORDER BY movement, p.name, r.guest_name`);
}

const propertyOccupancyRow = z.object({ id: z.string().uuid(), name: z.string(), occupied: z.boolean() });
export type PropertyOccupancy = z.infer<typeof propertyOccupancyRow>;

/**
 * Every property `ownerUserId` owns, occupied when a confirmed stay covers the night of `date`
 * (check-in on or before it, check-out after it).
 */
export function propertyOccupancyOn(db: CommonQueryMethods, ownerUserId: string, date: string): Promise<readonly PropertyOccupancy[]> {
  return db.any(sql.type(propertyOccupancyRow)`
    SELECT p.id, p.name,
           EXISTS (SELECT 1 FROM reservations r
                   WHERE r.property_id = p.id AND r.status = 'confirmed'
                     AND r.check_in <= ${date}::date AND r.check_out > ${date}::date) AS occupied
    FROM properties p WHERE p.owner_user_id = ${ownerUserId} ORDER BY p.created_at, p.id`);
}
