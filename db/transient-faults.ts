import { BackendTerminatedError, BackendTerminatedUnexpectedlyError, ConnectionError, IdleTransactionTimeoutError, StatementTimeoutError } from 'slonik';

const TRANSIENT_ERROR_CLASSES = [ConnectionError, BackendTerminatedError, BackendTerminatedUnexpectedlyError, StatementTimeoutError];

/**
 * SQLSTATEs that say "try again": connection exceptions (class 08), insufficient resources (53),
 * shutdown, crash or recovery (57P01-57P05), query_canceled by statement_timeout (57014), a
 * serialization failure (40001, after slonik's own retries) and lock_not_available (55P03, lock_timeout).
 */
const TRANSIENT_SQLSTATE = /^(08...|53...|57P0[1-5]|57014|40001|55P03)$/;

/** Socket failures on the way to the database. */
const TRANSIENT_NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/**
 * The pool's own words for a connection that broke under a query (pg's "Connection terminated",
 * slonik's driver refusing a client it is destroying).
 */
const BROKEN_CONNECTION_MESSAGE = /^(Connection terminated|Client (has encountered a connection error|is destroyed|is pending destroy))/;

/**
 * Whether a failure means the database could not answer now (unreachable, restarting, overloaded,
 * too slow), rather than anything about the request: callers answer "try again later" and must not
 * turn it into a final refusal. Looks through `cause` chains, since slonik wraps the driver's errors.
 *
 * A bug of ours is never transient, so that it answers 500 and is logged as an error rather than hidden
 * behind retries: a transaction left idle past idle_in_transaction_session_timeout (25P03, slonik's
 * IdleTransactionTimeoutError: work that does not belong in a transaction), a deadlock (40P01, after
 * slonik's own retries: two of our transactions take locks in different orders; but see LostLockRace),
 * and slonik's "Cannot use released connection" (a connection used after its callback returned).
 */
export function isTransientDatabaseFault(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth += 1) {
    if (current instanceof LostLockRace) return true;
    // Its message starts "Connection terminated" like a broken connection's.
    if (current instanceof IdleTransactionTimeoutError) return false;
    if (TRANSIENT_ERROR_CLASSES.some((errorClass) => current instanceof errorClass)) return true;
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && (TRANSIENT_SQLSTATE.test(code) || TRANSIENT_NETWORK_CODES.has(code))) return true;
    if (BROKEN_CONNECTION_MESSAGE.test(current.message)) return true;
  }
  return false;
}

/**
 * A deadlock (40P01) that outlasted slonik's retries of a statement that runs alone, outside any
 * transaction, on rows our transactions lock (the portal's per-request session sync): the statement
 * lost a race to a transaction that went on and committed, which says nothing of a bug in either, so
 * the request is answered "try again" (503) rather than 500.
 */
export class LostLockRace extends Error {
  override name = 'LostLockRace';
}

const DEADLOCK_DETECTED = '40P01';

/** Runs one lone statement (see LostLockRace), turning its deadlock into a transient fault. */
export async function passingOnLostLockRace<T>(statement: () => Promise<T>): Promise<T> {
  try {
    return await statement();
  } catch (error) {
    for (let current: unknown = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth += 1) {
      if ((current as { code?: unknown }).code === DEADLOCK_DETECTED) throw new LostLockRace('the statement lost a deadlock to a concurrent transaction', { cause: error });
    }
    throw error;
  }
}
