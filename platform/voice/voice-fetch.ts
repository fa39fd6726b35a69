import type { VoiceRequestOptions } from './voice-platform';

/** The request never got an answer (network fault or deadline); the caller decides which error kind that is. */
export class NoAnswer extends Error {
  override name = 'NoAnswer';
}

/**
 * fetch with a deadline that also honours the caller's signal. When the caller cancelled, its reason is
 * thrown as it is (cancellation is not a platform fault); every other failure becomes NoAnswer.
 */
export async function fetchWithDeadline(url: string, init: RequestInit, timeoutMs: number, options: VoiceRequestOptions = {}): Promise<Response> {
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([deadline, options.signal]) : deadline;
  try {
    return await fetch(url, { ...init, signal, redirect: 'error' });
  } catch (error) {
    if (options.signal?.aborted) throw options.signal.reason;
    throw new NoAnswer(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
  }
}

/** `Retry-After` in seconds, when the platform sent it that way. */
export function retryAfterSeconds(response: Response): number | undefined {
  const value = response.headers.get('retry-after')?.trim();
  return value && /^\d+$/.test(value) ? Number(value) : undefined;
}
