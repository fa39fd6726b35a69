import { html, renderPage, type SafeHtml } from './html';

/** The same answer for a wrong password, an unknown email, a locked or a disabled account. */
export const LOGIN_FAILED_MESSAGE = 'Email or password is wrong, or the account is temporarily locked.';
export const LOGIN_FORM_EXPIRED_MESSAGE = 'Your sign-in form expired. Please try again.';
export const LOGIN_RATE_LIMITED_MESSAGE = 'Too many attempts. Wait a minute and try again.';

/** An email + password sign-in form (the PM app's and the portal-only accounts'). */
export interface LoginPage {
  title: string;
  /** Where the form posts. */
  action: string;
  /** Shown above the form, e.g. where else to sign in. */
  note?: SafeHtml;
  /** The form's hidden fields (its CSRF token, where to go after signing in), in order. */
  hiddenFields: Record<string, string>;
  /** Filled in again after a refusal. */
  email?: string;
  error?: string;
}

export function renderLoginPage(page: LoginPage): string {
  return renderPage(
    page.title,
    html`<h1>${page.title}</h1>
${page.error ? html`<p class="error" role="alert">${page.error}</p>` : ''}
${page.note ?? ''}<form method="post" action="${page.action}">
${Object.entries(page.hiddenFields).map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">\n`)}<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required maxlength="320" value="${page.email ?? ''}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024">
<div class="actions"><button type="submit">Sign in</button></div>
</form>`,
  );
}
