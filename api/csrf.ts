import type { FastifyReply, FastifyRequest } from 'fastify';
import { randomToken, secretsEqual } from '../platform/secrets';

const CSRF_TOKEN = /^[A-Za-z0-9_-]{43}$/;

/**
 * A double-submit CSRF token for a form (the sign-in pages, the portal's sign-out): the page puts a
 * random token in an HttpOnly, SameSite=Strict cookie scoped to the form's target path and in a hidden
 * field; the POST needs both, equal. Another site can neither read the cookie nor set it, so it cannot
 * submit the form for the user (nor sign them in to the attacker's account).
 */
export class DoubleSubmitCsrf {
  constructor(
    private readonly cookieName: string,
    private readonly path: string,
    private readonly secure: boolean,
  ) {}

  /** Keeps the token of an existing cookie, so two open tabs both work. */
  issue(request: FastifyRequest, reply: FastifyReply): string {
    const existing = request.cookies[this.cookieName];
    return this.set(reply, existing && CSRF_TOKEN.test(existing) ? existing : randomToken());
  }

  /** A fresh token, for a page answering a refused submission. */
  renew(reply: FastifyReply): string {
    return this.set(reply, randomToken());
  }

  matches(request: FastifyRequest, formToken: string | undefined): boolean {
    const cookieToken = request.cookies[this.cookieName];
    return Boolean(cookieToken && formToken && secretsEqual(formToken, cookieToken));
  }

  clear(reply: FastifyReply): void {
    reply.clearCookie(this.cookieName, { path: this.path });
  }

  private set(reply: FastifyReply, token: string): string {
    reply.setCookie(this.cookieName, token, { path: this.path, httpOnly: true, sameSite: 'strict', secure: this.secure });
    return token;
  }
}
