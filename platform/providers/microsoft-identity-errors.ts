import { z } from 'zod';
import { ProviderError } from './provider-error';

const PROVIDER = 'Microsoft';

/**
 * AADSTS codes that mean the user's grant is gone and only a new authorization helps:
 * 70008 / 700082 expired through inactivity, 50173 revoked (password reset, admin action),
 * 70000 code or token not valid, 54005 code already redeemed.
 */
const GRANT_GONE = new Set([70008, 700082, 50173, 70000, 54005]);
/** 7000215 wrong client secret, 7000222 expired client secret: an operator must rotate it. */
const CLIENT_REJECTED = new Set([7000215, 7000222]);

const errorBody = z.object({
  error: z.string().optional(),
  error_description: z.string().optional(),
  error_codes: z.array(z.number().int()).optional(),
});

/**
 * Classifies an error answer of the Microsoft identity platform's token endpoint. The OAuth `error`
 * alone is too coarse (`invalid_grant` also covers a bad redirect URI), so the AADSTS code decides
 * where it is known; it comes in `error_codes` and again at the start of `error_description`.
 */
export async function classifyMicrosoftTokenError(response: Response): Promise<ProviderError> {
  const parsed = errorBody.safeParse(await response.json().catch(() => undefined));
  const body = parsed.success ? parsed.data : {};
  // The description goes on with trace and correlation ids on further lines; the first line says it all.
  const description = body.error_description?.split(/\r?\n/)[0] ?? response.statusText;
  const aadsts = body.error_codes?.[0] ?? Number(/AADSTS(\d+)/.exec(description)?.[1] ?? Number.NaN);
  const known = Number.isInteger(aadsts);
  const message = `${PROVIDER} answered ${response.status}${body.error ? ` ${body.error}` : ''}: ${description}`;
  const details = { status: response.status, ...(known ? { providerCode: `AADSTS${aadsts}` } : body.error ? { providerCode: body.error } : {}) };

  if (response.status >= 500 || response.status === 429) return new ProviderError('transient', message, details);
  if (CLIENT_REJECTED.has(aadsts) || body.error === 'invalid_client' || body.error === 'unauthorized_client') {
    return new ProviderError('invalid_client', message, details);
  }
  // interaction_required (consent withdrawn, MFA now demanded): the refresh token cannot go on without the user.
  if (GRANT_GONE.has(aadsts) || body.error === 'invalid_grant' || body.error === 'interaction_required') {
    return new ProviderError('invalid_grant', message, details);
  }
  return new ProviderError('protocol', message, details);
}
