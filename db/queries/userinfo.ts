import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const userinfoRow = z.object({ id: z.string(), email: z.string(), displayName: z.string(), disabled: z.boolean() });
export type UserinfoRow = z.infer<typeof userinfoRow>;

/** What OpenID Connect userinfo tells about a user, and whether an operator disabled the account. */
export function findUserinfo(db: CommonQueryMethods, userId: string): Promise<UserinfoRow | null> {
  return db.maybeOne(sql.type(userinfoRow)`
    SELECT id, email::text AS email, display_name AS "displayName", disabled_at IS NOT NULL AS disabled FROM users WHERE id = ${userId}`);
}
