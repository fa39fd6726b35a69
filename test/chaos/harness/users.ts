import { randomUUID } from 'node:crypto';
import type { CommonQueryMethods } from 'slonik';
import { insertSession, insertUser } from '../../../db/queries/users';
import { hashBearerValue, randomToken } from '../../../platform/secrets';

/**
 * `count` PM users, each with a live session token, written with the platform's own queries. No password
 * is ever checked for them, so none is hashed: Argon2 for hundreds of users would take a minute of CPU.
 */
export async function signedInUsers(db: CommonQueryMethods, count: number): Promise<Array<{ userId: string; sessionToken: string }>> {
  return inBatches(Array.from({ length: count }, (_, index) => index), 16, async (index) => {
    const user = await insertUser(db, { email: `chaos-${index}-${randomUUID()}@example.com`, displayName: `Chaos ${index}`, passwordHash: 'never-checked' });
    const sessionToken = randomToken();
    await insertSession(db, { userId: user.id, tokenHash: hashBearerValue(sessionToken), expiresAt: new Date(Date.now() + 24 * 3600 * 1000) });
    return { userId: user.id, sessionToken };
  });
}

/** Runs `work` over `items` with at most `concurrency` at a time; results in the order of `items`. */
export async function inBatches<T, R>(items: readonly T[], concurrency: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, lane));
  return results;
}
