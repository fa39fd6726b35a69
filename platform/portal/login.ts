import type { PortalUserRow } from '../../db/queries/portal-users';
import type { LoginAccounts } from '../login';
import { portalActorId } from './sessions';
import { verifyPortalUserPassword } from './users';

/**
 * Portal-only accounts sign in with the PM login's lockout rules (platform/login.ts) counted in the
 * portal's own ledger. Refusals and the lock are audited as PortalLoginFailed (reason invalid_credentials
 * or locked); PortalLogin is the caller's, with the session it starts (platform/portal/sessions.ts).
 */
export const PORTAL_ACCOUNTS: LoginAccounts<PortalUserRow> = {
  failureLedger: 'portal_login_failures',
  async verifyPassword(db, email, password) {
    const account = await verifyPortalUserPassword(db, email, password);
    return account && { account, disabled: false };
  },
  refused: (user, details) => ({
    action: 'PortalLoginFailed',
    outcome: 'failure',
    actor: { type: 'user', ...(user ? { id: portalActorId(user.id) } : {}) },
    details: { ...details, ...(user ? { portalUserId: user.id } : {}) },
  }),
  lockEngaged: (details) => ({ action: 'PortalLoginFailed', outcome: 'failure', actor: { type: 'user' }, details: { ...details, reason: 'locked' } }),
  accepted: () => null,
};
