import type { FakeMicrosoft } from '../../fakes/microsoft';
import type { TestPlatform } from './platform';

export const MICROSOFT_TEST_CLIENT = { clientId: '6731de76-14a6-49ae-97bc-6eba6914391e', clientSecret: 'Xk38Q~fake-microsoft-client-secret-value' };

/** What startTestPlatform needs in `environment` to talk to the fake Microsoft. */
export function microsoftEnvironment(microsoft: FakeMicrosoft, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    MICROSOFT_CLIENT_ID: MICROSOFT_TEST_CLIENT.clientId,
    MICROSOFT_CLIENT_SECRET: MICROSOFT_TEST_CLIENT.clientSecret,
    MICROSOFT_AUTHORIZE_URL: microsoft.authorizeUrl,
    MICROSOFT_TOKEN_URL: microsoft.tokenUrl,
    MICROSOFT_GRAPH_URL: microsoft.graphUrl,
    ...overrides,
  };
}

/**
 * What a browser does: follow our redirect to the fake Microsoft, which signs in a new account and
 * approves at once, then back to our callback. Returns the callback's answer and the fake account.
 */
export async function connectMicrosoftCalendar(platform: TestPlatform, microsoft: FakeMicrosoft, sessionToken: string) {
  const auth = await fetch(`${platform.apiUrl}/api/v1/integrations/microsoft-calendar/auth`, {
    headers: { authorization: `Bearer ${sessionToken}` },
    redirect: 'manual',
  });
  if (auth.status !== 302) throw new Error(`auth answered ${auth.status}: ${await auth.text()}`);
  const authorizeUrl = new URL(auth.headers.get('location')!);
  const consent = await fetch(authorizeUrl, { redirect: 'manual' });
  if (consent.status !== 302) throw new Error(`fake Microsoft answered ${consent.status}: ${await consent.text()}`);
  const callback = await fetch(consent.headers.get('location')!, { headers: { authorization: `Bearer ${sessionToken}` } });
  const body = (await callback.json()) as { connectionId: string; workflowId: string };
  return { authorizeUrl, httpStatus: callback.status, ...body, oid: microsoft.latestAccount()! };
}

export async function microsoftStatus(platform: TestPlatform, sessionToken: string) {
  const response = await fetch(`${platform.apiUrl}/api/v1/integrations/microsoft-calendar/status`, { headers: { authorization: `Bearer ${sessionToken}` } });
  return (await response.json()) as Record<string, unknown> & { connection: Record<string, unknown> | null };
}

export async function disconnectMicrosoftCalendar(platform: TestPlatform, sessionToken: string) {
  return fetch(`${platform.apiUrl}/api/v1/integrations/microsoft-calendar/disconnect`, { method: 'POST', headers: { authorization: `Bearer ${sessionToken}` } });
}
