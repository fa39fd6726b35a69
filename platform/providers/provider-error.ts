import type { z } from 'zod';

/**
 * How a provider call failed, which decides what the connection workflow does next:
 * - `invalid_grant`: the user's grant is gone (revoked, expired, rotated away). Final: needs re-authorisation.
 * - `invalid_client`: our own client credentials are wrong. An operator must fix configuration; retried slowly.
 * - `transient`: 5xx, 429, 408, timeouts and network faults. Retried with backoff.
 * - `protocol`: any other refusal or an answer we cannot read. Retried, and visible as the last error.
 */
export type ProviderErrorKind = 'invalid_grant' | 'invalid_client' | 'transient' | 'protocol';

export class ProviderError extends Error {
  override name = 'ProviderError';

  constructor(
    readonly kind: ProviderErrorKind,
    message: string,
    readonly details: { status?: number; providerCode?: string } = {},
  ) {
    super(message);
  }
}

/** Google, Microsoft and Airbnb all answer OAuth errors as `{ error, error_description }`. */
export async function classifyOAuthErrorResponse(provider: string, response: Response): Promise<ProviderError> {
  const body = (await response.json().catch(() => ({}))) as { error?: unknown; error_description?: unknown };
  const code = typeof body.error === 'string' ? body.error : undefined;
  const description = typeof body.error_description === 'string' ? body.error_description : response.statusText;
  const message = `${provider} answered ${response.status}${code ? ` ${code}` : ''}: ${description}`;
  const details = { status: response.status, ...(code ? { providerCode: code } : {}) };
  // 408: the provider gave up waiting for our request; the same request may well succeed next time.
  if (response.status >= 500 || response.status === 429 || response.status === 408) return new ProviderError('transient', message, details);
  if (code === 'invalid_grant') return new ProviderError('invalid_grant', message, details);
  if (code === 'invalid_client' || code === 'unauthorized_client') return new ProviderError('invalid_client', message, details);
  return new ProviderError('protocol', message, details);
}

/**
 * fetch with a deadline that also honours the caller's signal; network faults and timeouts become
 * transient ProviderErrors. A caller that cancelled gets its own reason back: that is no provider fault.
 */
export async function providerFetch(provider: string, url: string, init: RequestInit, timeoutMs: number): Promise<Response> {
  const deadline = AbortSignal.timeout(timeoutMs);
  const cancelled = init.signal ?? undefined;
  try {
    return await fetch(url, { ...init, signal: cancelled ? AbortSignal.any([deadline, cancelled]) : deadline, redirect: 'error' });
  } catch (error) {
    if (cancelled?.aborted) throw cancelled.reason;
    const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    throw new ProviderError('transient', `${provider} could not be reached (${reason})`);
  }
}

/** A provider's JSON answer, checked against what we rely on; anything else is a protocol error naming the fields. */
export async function readProviderJson<T>(provider: string, what: string, response: Response, schema: z.ZodType<T, z.ZodTypeDef, unknown>): Promise<T> {
  const parsed = schema.safeParse(await response.json().catch(() => undefined));
  if (!parsed.success) {
    throw new ProviderError('protocol', `${provider} ${what} is malformed: ${parsed.error.issues.map((issue) => issue.path.join('.') || issue.message).join(', ')}`);
  }
  return parsed.data;
}
