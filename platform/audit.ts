import { sql, type CommonQueryMethods } from 'slonik';

/** Action names of design.md invariant 7; each row says who did what, to what, from where. */
export type AuditAction =
  | 'UserLogin'
  | 'UserLoginFailed'
  | 'UserLogout'
  | 'IntegrationConnectStarted'
  | 'IntegrationCallbackRejected'
  | 'IntegrationConnect'
  | 'OAuthTokenRefresh'
  | 'IntegrationNeedsReauth'
  | 'OAuthRevoke'
  | 'IntegrationDisconnect'
  | 'OAuthAuthorize'
  | 'OAuthAuthorizeRejected'
  | 'OAuthConsentCsrfRejected'
  | 'OAuthCodeExchange'
  | 'OAuthCodeReplay'
  | 'OAuthRefreshTokenReuse'
  | 'OAuthCodeRejected'
  | 'OAuthRefreshTokenRejected'
  | 'OAuthIntrospectionDenied'
  | 'OAuthClientAuthThrottled'
  | 'OAuthClientCredentials'
  | 'OAuthClientAuthFailed'
  | 'OAuthClientCreate'
  | 'OAuthClientUpdate'
  | 'OAuthClientSecretRotate'
  | 'OAuthClientRevoke'
  | 'OAuthGrantRevoke'
  | 'OAuthSigningKeyRotate'
  | 'UserLoginLocked'
  | 'WebhookSubscriptionCreate'
  | 'WebhookSubscriptionStop'
  | 'WebhookRejected'
  | 'IntegrationSecurityEvent'
  | 'ListingMappingChange'
  | 'ReservationAcknowledge'
  | 'VoiceDeviceLink'
  | 'VoiceDeviceUnlink'
  | 'VoiceAcceptGrant'
  | 'VoiceDeviceUnlinkRequested'
  | 'VoiceCommand'
  | 'VoiceCommandRateLimited'
  | 'VoiceRequestRejected'
  | 'OidcIdTokenIssued'
  | 'OidcLogout'
  | 'OidcLogoutRejected'
  | 'SsoTokenIssued'
  | 'SsoLogin'
  | 'SsoTokenRejected'
  | 'SsoLogout'
  | 'SsoLogoutTokenRejected'
  | 'SsoRolesApplied'
  | 'UserRolesChange'
  | 'UserDisable'
  | 'UserEnable'
  | 'SsoRoleMappingChange'
  | 'PortalLogin'
  | 'PortalLoginFailed'
  | 'PortalLogout';

export interface AuditEntry {
  action: AuditAction;
  outcome: 'success' | 'failure';
  actor: { type: 'user' | 'client' | 'system' | 'operator'; id?: string };
  userId?: string;
  clientId?: string;
  provider?: string;
  connectionId?: string;
  origin?: { ip?: string; userAgent?: string };
  details?: Record<string, string | number | boolean | null | string[]>;
}

// Details are free-form, so a key that names a secret is refused outright rather than trusted to be harmless.
const SECRET_KEY_PATTERN = /(access_?token|refresh_?token|id_?token|^token$|secret|password|verifier|^code$)/i;

export class AuditLog {
  constructor(private readonly db: CommonQueryMethods) {}

  /** Pass a transaction as `within` so the audit row commits or rolls back with the change it describes. */
  async record(entry: AuditEntry, within: CommonQueryMethods = this.db): Promise<void> {
    const secretKeys = Object.keys(entry.details ?? {}).filter((key) => SECRET_KEY_PATTERN.test(key));
    if (secretKeys.length > 0) throw new Error(`audit details must not carry secrets (${secretKeys.join(', ')})`);
    await within.query(sql.unsafe`
      INSERT INTO audit_log (action, outcome, actor_type, actor_id, user_id, client_id, provider, connection_id, ip_address, user_agent, details)
      VALUES (
        ${entry.action}, ${entry.outcome}, ${entry.actor.type}, ${entry.actor.id ?? null}, ${entry.userId ?? null},
        ${entry.clientId ?? null}, ${entry.provider ?? null}, ${entry.connectionId ?? null},
        ${entry.origin?.ip ?? null}, ${entry.origin?.userAgent ?? null}, ${sql.jsonb(entry.details ?? {})}
      )`);
  }
}
