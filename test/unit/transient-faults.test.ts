import { BackendTerminatedUnexpectedlyError, IdleTransactionTimeoutError, StatementTimeoutError } from 'slonik';
import { describe, expect, it } from 'vitest';
import { isTransientDatabaseFault } from '../../db/transient-faults';

const postgresError = (code: string, message = `error ${code}`) => Object.assign(new Error(message), { code });
/** As slonik wraps what the driver threw. */
const wrapped = (cause: Error) => new Error('Query failed', { cause });

/**
 * A transient fault answers 503 "try again" (a voice platform keeps the link); a bug of ours answers
 * 500 and is logged as an error, so it must not be classified as transient.
 */
describe('isTransientDatabaseFault', () => {
  it.each([
    ['lock_timeout (55P03)', wrapped(postgresError('55P03', 'canceling statement due to lock timeout'))],
    ['statement_timeout', new StatementTimeoutError(postgresError('57014', 'canceling statement due to statement timeout'))],
    ['a connection failure (08006)', postgresError('08006')],
    ['too many connections (53300)', postgresError('53300')],
    ['an administrator shutdown (57P01)', postgresError('57P01')],
    ['a serialization failure (40001)', postgresError('40001')],
    ['a refused connection', wrapped(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))],
    ['a connection cut under a query', new BackendTerminatedUnexpectedlyError(new Error('Connection terminated unexpectedly'))],
    ['a client the driver is destroying', new Error('Client is pending destroy.')],
  ])('counts %s as transient', (_case, error) => {
    expect(isTransientDatabaseFault(error)).toBe(true);
  });

  it.each([
    ['a released connection used again', new Error('Cannot use released connection')],
    ['a transaction left idle past its timeout', new IdleTransactionTimeoutError(postgresError('25P03', 'terminating connection due to idle-in-transaction timeout'))],
    ['a deadlock (40P01)', wrapped(postgresError('40P01', 'deadlock detected'))],
    ['a unique violation (23505)', postgresError('23505')],
    ['an error without a code', new Error('something else')],
  ])('does not count %s, a bug of ours or of the request, as transient', (_case, error) => {
    expect(isTransientDatabaseFault(error)).toBe(false);
  });
});
