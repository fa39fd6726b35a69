import type { FastifyReply, FastifyRequest } from 'fastify';
import { hashBearerValue, matchesStoredHash, randomToken } from '../../../platform/secrets';
import { BUTTON_PRESS, PM_SSO_TOKEN_PATH } from '../../../platform/sso/browser-binding';

export const BUTTON_PRESS_COOKIE = 'pm_sso_press';

/**
 * What lets the button's token step mint only for a browser whose user pressed the button. The token
 * step is a GET, and a lured top-level GET carries the browser's SameSite=Lax cookies, the session's
 * and this one's alike; so a cookie alone would let another site, racing the user's own press, mint a
 * token bound to its own binding. Hence two halves: the press (the POST, CSRF-checked) sets an HttpOnly
 * cookie with a random value, scoped to the token step, and puts only its SHA-256 in the redirect to
 * the portal's handoff, which hands it on to the token step as `press`. Another site can neither read
 * the cookie nor learn the hash, which travels only in this browser's own redirects, so it cannot build
 * a token-step link that matches. The cookie lives as long as an authorization's state and is cleared
 * once a token is minted with it (single use); a failure before that keeps it, so a reload can retry.
 */
export class ButtonPress {
  constructor(
    private readonly secure: boolean,
    private readonly lifetimeSeconds: number,
  ) {}

  /** A fresh press in this browser (replacing any earlier one); answers the hash the redirect chain carries. */
  start(reply: FastifyReply): string {
    const value = randomToken();
    // Lax, not Strict: the token step is reached through the portal's redirect, another site's.
    reply.setCookie(BUTTON_PRESS_COOKIE, value, { path: PM_SSO_TOKEN_PATH, httpOnly: true, sameSite: 'lax', secure: this.secure, maxAge: this.lifetimeSeconds });
    return hashBearerValue(value);
  }

  /** Whether `press` names the press of this browser's cookie (constant time). */
  matches(request: FastifyRequest, press: string | undefined): boolean {
    const value = request.cookies[BUTTON_PRESS_COOKIE];
    return value !== undefined && press !== undefined && BUTTON_PRESS.test(press) && matchesStoredHash(value, press);
  }

  /** The press is used up: the next token needs the button again. */
  usedUp(reply: FastifyReply): void {
    reply.clearCookie(BUTTON_PRESS_COOKIE, { path: PM_SSO_TOKEN_PATH });
  }
}
