import { setTimeout as sleep } from 'node:timers/promises';
import type { TestPlatform } from '../../helpers/platform';

/** A browser gives up on a callback that keeps answering 503 after this many tries. */
const CALLBACK_ATTEMPTS = 5;
/** What a browser waits when a 503 names no Retry-After (or names a date). */
const DEFAULT_RETRY_AFTER_SECONDS = 1;

export interface BrowserConsent {
  /** The callback's final status (202 once the connection's workflow owns the code). */
  status: number;
  connectionId?: string;
  workflowId?: string;
  /** 503s the callback answered before that: each waited out and retried, as a browser would. */
  retriedAfter503: number;
}

/**
 * What a browser does on a loaded platform: follows our redirect to the provider's fake (which approves at
 * once), then back to our callback, and when the callback answers 503 waits what Retry-After asks and tries
 * the same callback again (the api-server leaves the code unspent for that), a few times at most.
 */
export async function consentAsBrowser(platform: TestPlatform, integration: 'google-calendar' | 'microsoft-calendar', sessionToken: string): Promise<BrowserConsent> {
  const authorization = { authorization: `Bearer ${sessionToken}` };
  const auth = await fetch(`${platform.apiUrl}/api/v1/integrations/${integration}/auth`, { headers: authorization, redirect: 'manual' });
  if (auth.status !== 302) throw new Error(`${integration} auth answered ${auth.status}: ${await auth.text()}`);
  const consent = await fetch(auth.headers.get('location')!, { redirect: 'manual' });
  if (consent.status !== 302) throw new Error(`the fake provider of ${integration} answered ${consent.status}: ${await consent.text()}`);
  const callbackUrl = consent.headers.get('location')!;
  for (let attempt = 1; ; attempt++) {
    const callback = await fetch(callbackUrl, { headers: authorization });
    const { connectionId, workflowId } = (await callback.json()) as { connectionId?: string; workflowId?: string };
    if (callback.status !== 503 || attempt === CALLBACK_ATTEMPTS) {
      return { status: callback.status, ...(connectionId ? { connectionId } : {}), ...(workflowId ? { workflowId } : {}), retriedAfter503: attempt - 1 };
    }
    const retryAfter = callback.headers.get('retry-after')?.trim() ?? '';
    await sleep((/^\d+$/.test(retryAfter) ? Number(retryAfter) : DEFAULT_RETRY_AFTER_SECONDS) * 1000);
  }
}
