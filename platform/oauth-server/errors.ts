/** The only error codes the server answers: RFC 6749 section 5.2's, RFC 7591's registration errors, invalid_token and RFC 8693's invalid_target. */
export const OAUTH_ERROR_CODES = [
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'unsupported_response_type',
  'invalid_scope',
  'access_denied',
  'invalid_client_metadata',
  'invalid_redirect_uri',
  'invalid_token',
  // RFC 8693 section 2.2.2: the token exchange's audience is not one we issue tokens for.
  'invalid_target',
  // RFC 6750 section 3.1 (userinfo) and OpenID Connect Core section 3.1.2.6 (authorization).
  'insufficient_scope',
  'login_required',
  'consent_required',
  'request_not_supported',
  'request_uri_not_supported',
  'temporarily_unavailable',
  'server_error',
] as const;
export type OAuthErrorCode = (typeof OAUTH_ERROR_CODES)[number];

/** An OAuth error answered as `{ error, error_description }` with the status RFC 6749 asks for. */
export class OAuthError extends Error {
  override name = 'OAuthError';

  constructor(
    readonly code: OAuthErrorCode,
    readonly description: string,
    readonly statusCode = code === 'invalid_client' ? 401 : 400,
  ) {
    super(description);
  }
}

export const oauthErrorSchema = {
  type: 'object',
  required: ['error'],
  properties: { error: { type: 'string' }, error_description: { type: 'string' } },
} as const;
