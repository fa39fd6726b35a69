/**
 * ApplicationFailure types that activities throw and the workflows tell apart.
 * Kept free of imports: the workflow bundle includes this file.
 */
export const FailureType = {
  /**
   * Provider work found the stored access token expired or about to expire (an attempt retried long after
   * the workflow checked it, e.g. after a worker died): the workflow refreshes first. Never retried as is.
   */
  accessTokenExpired: 'AccessTokenExpired',
  /** The provider refused the grant for good (invalid_grant and its twins). Never retried. */
  grantRevoked: 'GrantRevoked',
  /** The authorization code could not be exchanged (expired, reused, wrong verifier). Never retried. */
  authorizationRejected: 'AuthorizationRejected',
  /** The exchange could no longer start in time for the code's lifetime; the code was not presented. Never retried. */
  authorizationCodeExpired: 'AuthorizationCodeExpired',
  /** The connection was disconnected or removed while the activity was under way. Never retried. */
  connectionGone: 'ConnectionGone',
  /** Provider unavailable, rate limited or unreachable. Retried. */
  providerUnavailable: 'ProviderUnavailable',
  /** Another attempt of the same token write still holds the connection's lease and may be talking to the provider. Retried. */
  tokenWriteInProgress: 'TokenWriteInProgress',
  /**
   * Both refresh tokens were refused after an earlier attempt's provider call went unanswered: the
   * provider rotated and the answer was lost. Final, like GrantRevoked, but with its own reason.
   */
  refreshTokenLostInFlight: 'RefreshTokenLostInFlight',
  /**
   * The authorization code was refused after an earlier attempt's exchange went unanswered: the
   * provider spent the code and the answer was lost. Final, like AuthorizationRejected, with its own reason.
   */
  authorizationLostInFlight: 'AuthorizationLostInFlight',
  /** The provider refuses our client or answers what we cannot read: an operator must look. Not retried at once. */
  providerRejected: 'ProviderRejected',
  /** A stored secret cannot be decrypted (its key is gone): an operator must look. Not retried at once. */
  credentialUnreadable: 'CredentialUnreadable',
  /** A voice platform says our permission for the user is gone (the event gateway's 403). Never retried. */
  platformPermissionRevoked: 'PlatformPermissionRevoked',
  /** Home Graph no longer knows the agent user: Google unlinked it. Never retried. */
  agentUserGone: 'AgentUserGone',
  /** The voice device was unlinked (or removed) while the activity was under way. Never retried. */
  deviceUnlinked: 'DeviceUnlinked',
  /** A back-channel logout receiver answered 400: it will not accept the logout token. Never retried. */
  backchannelLogoutRefused: 'BackchannelLogoutRefused',
  /** A back-channel logout receiver did not answer, or answered anything but 2xx or 400. Retried until the deadline. */
  backchannelLogoutUndelivered: 'BackchannelLogoutUndelivered',
} as const;

/** The needs_reauth reason (and recorded error kind) for RefreshTokenLostInFlight. */
export const REFRESH_TOKEN_LOST_IN_FLIGHT = 'refresh_token_lost_in_flight';

/** The failed connection's reason (and recorded error kind) for AuthorizationCodeExpired. */
export const AUTHORIZATION_CODE_EXPIRED = 'authorization_code_expired';

/** The failed connection's reason (and recorded error kind) for AuthorizationLostInFlight. */
export const AUTHORIZATION_LOST_IN_FLIGHT = 'authorization_lost_in_flight';

export const NON_RETRYABLE_FAILURES = [
  FailureType.accessTokenExpired,
  FailureType.grantRevoked,
  FailureType.refreshTokenLostInFlight,
  FailureType.authorizationLostInFlight,
  FailureType.authorizationRejected,
  FailureType.authorizationCodeExpired,
  FailureType.connectionGone,
  FailureType.providerRejected,
  FailureType.credentialUnreadable,
  FailureType.platformPermissionRevoked,
  FailureType.agentUserGone,
  FailureType.deviceUnlinked,
  FailureType.backchannelLogoutRefused,
];
