/**
 * How long Temporal waits for a heartbeat from a token write (a refresh, a code exchange) or a
 * revocation of unkept tokens before it gives the attempt up and starts the next one. The workflows
 * set it on those activities; the configuration checks the token lease against it (TOKEN_LEASE_*).
 * Kept free of imports: the workflow bundle includes this file.
 */
export const TOKEN_WRITE_HEARTBEAT_TIMEOUT_MS = 10_000;
