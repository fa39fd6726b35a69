/**
 * The OpenID Connect parameters of an authorization request (Core 1.0 section 3.1.2.1): `nonce`, `prompt`
 * and `max_age`, honoured for every client, OpenID Connect or not. Whether the user's sign-in is recent
 * enough is decided here; the authorization endpoint acts on it.
 */

export const MAX_NONCE_LENGTH = 512;
/** Larger than any session lifetime, and small enough for an int4 column. */
const MAX_AGE_LIMIT_SECONDS = 1_000_000_000;

export const PROMPT_VALUES = ['none', 'login', 'consent'] as const;
export type PromptValue = (typeof PROMPT_VALUES)[number];

export interface SignInRequirements {
  nonce: string | null;
  prompt: PromptValue[];
  /** Seconds; null when the request set none. */
  maxAge: number | null;
}

export interface OpenIdParameters {
  nonce?: string | undefined;
  prompt?: string | undefined;
  max_age?: string | undefined;
}

export type OpenIdParametersCheck = { ok: true; requirements: SignInRequirements } | { ok: false; description: string; reason: string };

/** Section 3.1.2.1: prompt is a space-separated set, `none` alone; max_age a non-negative integer. */
export function parseOpenIdParameters(parameters: OpenIdParameters): OpenIdParametersCheck {
  const refuse = (description: string, reason: string): OpenIdParametersCheck => ({ ok: false, description, reason });
  if (parameters.nonce !== undefined && parameters.nonce.length > MAX_NONCE_LENGTH) {
    return refuse(`nonce is longer than ${MAX_NONCE_LENGTH} characters`, 'nonce_too_long');
  }
  const prompt = parseStoredPrompt(parameters.prompt ?? null);
  if (prompt.some((value) => !(PROMPT_VALUES as readonly string[]).includes(value))) {
    return refuse(`prompt values are ${PROMPT_VALUES.join(', ')}`, 'prompt_unsupported');
  }
  if (prompt.includes('none') && prompt.length > 1) return refuse('prompt=none cannot be combined with other values', 'prompt_none_combined');
  let maxAge: number | null = null;
  if (parameters.max_age !== undefined) {
    if (!/^\d{1,10}$/.test(parameters.max_age) || Number(parameters.max_age) > MAX_AGE_LIMIT_SECONDS) {
      return refuse('max_age must be a non-negative integer number of seconds', 'max_age_malformed');
    }
    maxAge = Number(parameters.max_age);
  }
  // An empty nonce is no nonce (RFC 6749 section 3.1: empty parameters count as omitted).
  return { ok: true, requirements: { nonce: parameters.nonce || null, prompt: prompt as PromptValue[], maxAge } };
}

/** The prompt values as stored (space-separated, deduplicated) and read back. */
export function storedPrompt(prompt: readonly PromptValue[]): string | null {
  return prompt.length === 0 ? null : prompt.join(' ');
}

export function parseStoredPrompt(prompt: string | null): string[] {
  return [...new Set((prompt ?? '').split(' ').filter(Boolean))];
}

/**
 * Whether the user's current sign-in (its `auth_time`, epoch ms) serves the request. A new request
 * wants a new sign-in for prompt=login, or when the sign-in is older than max_age. A request stored
 * while the user signed in again (`storedAt`) is served by any sign-in after it was stored: that is the
 * sign-in it asked for, and comparing times rather than counting visits means it never loops.
 */
export function signInServes(requirements: Pick<SignInRequirements, 'prompt' | 'maxAge'>, authTime: number, now: number, storedAt?: number): boolean {
  if (storedAt !== undefined && authTime >= storedAt) return true;
  if (requirements.prompt.includes('login')) return false;
  return requirements.maxAge === null || now - authTime <= requirements.maxAge * 1000;
}
