/**
 * The least validity an access token must have left for a provider call (setup, renewal, sync) to
 * start with it. 30 s: such a token outlives one provider request at its default timeout
 * (PROVIDER_REQUEST_TIMEOUT_MS, 15 s) with as much again to spare for clock drift between us and the
 * provider. The workflow refreshes a token with less left before it schedules the call; the activity
 * refuses one (AccessTokenExpired) for an attempt that starts later than the workflow's check (a retry
 * after its worker died). One value for both, so the activity refuses only what went stale since the
 * workflow looked.
 * Kept free of imports: the workflow bundle includes this file. Running workflows decide by it, so a
 * new value needs a patch in workflows/connection-provider-work.ts.
 */
export const MIN_ACCESS_TOKEN_VALIDITY_MS = 30 * 1000;
