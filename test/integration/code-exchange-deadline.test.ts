import { sql } from 'slonik';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTHORIZATION_CODE_EXPIRED, FailureType } from '../../activities/failure-types';
import { attempt, failureOf, startTokenWriteBed, valueOf, type TokenWriteBed } from '../helpers/token-writes';

/**
 * Issue 12: the callback tells the exchange when the provider stops accepting the code. An attempt
 * that starts too late for it (a retry, or one that waited in a backlog) refuses without presenting
 * the code, so the connection fails at once with its reason instead of after a doomed call.
 */
describe('code exchange: the code deadline', () => {
  let bed: TokenWriteBed<'google'>;

  beforeAll(async () => {
    bed = await startTokenWriteBed({ fakes: { google: {} } });
  });

  afterAll(() => bed?.close());

  const tokenCalls = () => bed.google.calls.filter((call) => call.endpoint === 'token').length;
  const codeKept = (authorizationId: string) =>
    bed.services.db.oneFirst(sql.type(z.object({ kept: z.boolean() }))`
      SELECT code_enc IS NOT NULL AS kept FROM integration_authorizations WHERE id = ${authorizationId}`);

  it('an attempt that starts less than 30 s before the deadline refuses without calling Google, wipes the code and records why', async () => {
    const pending = await bed.pendingConnection('google-calendar');
    const callsBefore = tokenCalls();

    const failure = failureOf(await attempt(bed.activities.exchangeAuthorizationCode, [{ ...pending, codeExpiresAt: Date.now() + 20_000 }]).settled);

    expect(failure).toMatchObject({ type: FailureType.authorizationCodeExpired, nonRetryable: true, message: expect.stringContaining('connect again') });
    expect(tokenCalls()).toBe(callsBefore);
    expect(await codeKept(pending.authorizationId)).toBe(false);
    expect(await bed.stored(pending.connectionId)).toMatchObject({ status: 'pending', tokenVersion: 0, lastErrorKind: AUTHORIZATION_CODE_EXPIRED });
  });

  it('an attempt with the window still open exchanges the code as before', async () => {
    const pending = await bed.pendingConnection('google-calendar');

    const tokens = valueOf(await attempt(bed.activities.exchangeAuthorizationCode, [{ ...pending, codeExpiresAt: Date.now() + 60_000 }]).settled);

    expect(await bed.stored(pending.connectionId)).toMatchObject({ status: 'active', tokenVersion: tokens.tokenVersion });
    expect(await codeKept(pending.authorizationId)).toBe(false);
  });
});
