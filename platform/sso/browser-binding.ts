import { hashBearerValue, matchesStoredHash, randomToken } from '../secrets';

/**
 * Binds the PM app's one-time SSO token to the browser that asked for it, so a token minted for one
 * browser cannot sign another into the portal (login CSRF: an attacker's own token in a link to
 * /sso/redeem). The portal's /sso/handoff keeps a random value in an HttpOnly cookie and sends only its
 * SHA-256 (base64url) to the api-server, which puts it in the token as `bnd`; /sso/redeem accepts the
 * token only from the browser whose cookie hashes to it.
 */

/** The portal's step that starts the button's flow: sets the binding cookie, then goes on to the PM app. */
export const PORTAL_HANDOFF_PATH = '/sso/handoff';
/** The PM app's step that mints the bound token for the signed-in PM session and sends the browser to /sso/redeem. */
export const PM_SSO_TOKEN_PATH = '/sso/reality-portal/token';

/** A binding as it travels: the base64url SHA-256 of the cookie's value (43 characters). */
export const BROWSER_BINDING = /^[A-Za-z0-9_-]{43}$/;

/**
 * The PM app's proof of a button press (api/plugins/sso/button-press.ts), in the same form as a
 * binding: the handoff passes it from the button's redirect on to the token step, untouched and unread.
 */
export const BUTTON_PRESS_PARAMETER = 'press';
export const BUTTON_PRESS = BROWSER_BINDING;

/** A fresh cookie value and the binding that names it. */
export function newBrowserBinding(): { cookieValue: string; binding: string } {
  const cookieValue = randomToken();
  return { cookieValue, binding: hashBearerValue(cookieValue) };
}

/** Whether the browser's cookie value is the one the token's `bnd` names (constant time). */
export function isSameBrowser(binding: string, cookieValue: string | undefined): boolean {
  return cookieValue !== undefined && BROWSER_BINDING.test(binding) && matchesStoredHash(cookieValue, binding);
}
