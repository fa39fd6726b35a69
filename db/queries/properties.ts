import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

/** A property of the PM app: what listings and calendars are mapped to. */
const propertyRow = z.object({ id: z.string().uuid(), ownerUserId: z.string().uuid(), name: z.string() });
export type PropertyRow = z.infer<typeof propertyRow>;

export function findProperty(db: CommonQueryMethods, propertyId: string): Promise<PropertyRow | null> {
  return db.maybeOne(sql.type(propertyRow)`
    SELECT id, owner_user_id AS "ownerUserId", name FROM properties WHERE id = ${propertyId}`);
}

export function listUserProperties(db: CommonQueryMethods, ownerUserId: string): Promise<readonly PropertyRow[]> {
  return db.any(sql.type(propertyRow)`
    SELECT id, owner_user_id AS "ownerUserId", name FROM properties WHERE owner_user_id = ${ownerUserId} ORDER BY created_at, id`);
}
