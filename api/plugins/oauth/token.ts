import { requestOrigin } from '../../request-origin';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { OAuthError, oauthErrorSchema } from '../../../platform/oauth-server/errors';
import { SUPPORTED_GRANT_TYPES } from '../../../platform/oauth-server/clients';
import { VoiceLinkRevokedOnReuse, type GrantContext, type GrantedTokens } from '../../../platform/oauth-server/token-grants';
import type { TokenResponse } from '../../../platform/oauth-server/token-issuer';
import { hashBearerValue } from '../../../platform/secrets';
import { VoiceDeviceWorkflowStarts } from '../../voice-device-workflow';
import { requestVoiceDeviceUnlink } from '../voice/unlink';
import {
  authenticateCaller,
  CLIENT_REQUEST_BODY_LIMIT,
  clientRateLimitKey,
  requireFormParameters,
  stringField,
  type FormParameters,
} from './client-request';
import { answerOAuthErrors } from './oauth-errors';

const tokenResponseSchema = {
  type: 'object',
  required: ['access_token', 'token_type', 'expires_in', 'scope'],
  properties: {
    access_token: { type: 'string' },
    token_type: { type: 'string' },
    expires_in: { type: 'integer' },
    refresh_token: { type: 'string' },
    scope: { type: 'string' },
    id_token: { type: 'string' },
  },
} as const;

/**
 * Rate-limit key of the token endpoint: the presented refresh token or code (hashed), so each linked
 * device has its own budget however few addresses its platform calls from; other requests fall back
 * to the claimed client and the caller's address.
 */
export function tokenRateLimitKey(request: FastifyRequest): string {
  const parameters = request.body as FormParameters | undefined;
  if (parameters?.grant_type === 'refresh_token' && parameters.refresh_token) return `refresh|${hashBearerValue(parameters.refresh_token)}`;
  if (parameters?.grant_type === 'authorization_code' && parameters.code) return `code|${hashBearerValue(parameters.code)}`;
  return clientRateLimitKey(request);
}

/**
 * POST /oauth/token (RFC 6749 section 3.2): authorization_code (PKCE as the code was issued),
 * refresh_token and client_credentials; with the openid scope, the first two also answer an
 * OpenID Connect id_token. Form-encoded only; the client authenticates as it registered.
 * A voice client's tokens come with its device link, whose workflow is started here if it is not running yet.
 */
export default async function token(app: FastifyInstance) {
  answerOAuthErrors(app);
  const { tokenRequestsPerMinute } = app.services.config.authorizationServer;

  // A new link waits (bounded) for its workflow, as the platform allows seconds for it; a refresh that
  // finds the workflow never started retries the start without holding up its answer. Closing the
  // api-server waits for the starts still under way, before the Temporal connection goes.
  const workflowStarts = new VoiceDeviceWorkflowStarts(app.services);
  app.addHook('onClose', () => workflowStarts.close());
  const answer = async (request: FastifyRequest, granted: GrantedTokens, wait: boolean): Promise<TokenResponse> => {
    if (granted.voiceDevice) {
      const started = workflowStarts.ensure(granted.voiceDevice, request.log);
      if (wait) await started;
    }
    return granted.tokens;
  };

  const refreshTokens = async (request: FastifyRequest, context: GrantContext, parameters: FormParameters): Promise<GrantedTokens> => {
    try {
      return await app.authorizationServer.tokenEndpoint.refreshToken(context, { refreshToken: parameters.refresh_token, scope: parameters.scope });
    } catch (error) {
      if (error instanceof VoiceLinkRevokedOnReuse) {
        // Our side of the link has ended with the refusal; the workflow still has the platform's side to end.
        const unlink = { direction: 'tokens_revoked', requestedBy: { type: 'platform', id: error.voiceDevice.platform }, origin: context.origin } as const;
        await requestVoiceDeviceUnlink(app.services, error.voiceDevice, unlink).catch((signalError: unknown) =>
          request.log.warn({ err: signalError, deviceId: error.voiceDevice.id }, 'the unlink of a voice device whose refresh token was reused could not be signalled'),
        );
      }
      throw error;
    }
  };

  app.post<{ Body: FormParameters }>(
    '/oauth/token',
    {
      bodyLimit: CLIENT_REQUEST_BODY_LIMIT,
      config: { rateLimit: { max: tokenRequestsPerMinute, timeWindow: '1 minute', hook: 'preHandler', keyGenerator: tokenRateLimitKey } },
      preValidation: requireFormParameters,
      schema: {
        consumes: ['application/x-www-form-urlencoded'],
        body: {
          type: 'object',
          properties: {
            grant_type: stringField(128),
            code: stringField(512),
            redirect_uri: stringField(2048),
            code_verifier: stringField(128),
            refresh_token: stringField(512),
            scope: stringField(1024),
            client_id: stringField(256),
            client_secret: stringField(512),
          },
        },
        response: { 200: tokenResponseSchema, '4xx': oauthErrorSchema, '5xx': oauthErrorSchema },
      },
    },
    async (request, reply): Promise<TokenResponse> => {
      const parameters = request.body;
      const grantType = parameters.grant_type;
      if (grantType === undefined) throw new OAuthError('invalid_request', 'grant_type is required');
      if (!(SUPPORTED_GRANT_TYPES as readonly string[]).includes(grantType)) {
        throw new OAuthError('unsupported_grant_type', `grant_type ${grantType.slice(0, 64)} is not supported`);
      }
      const client = await authenticateCaller(app, request, parameters, 'token');
      const context = { client, origin: requestOrigin(request) };
      const { tokenEndpoint } = app.authorizationServer;
      reply.header('cache-control', 'no-store');
      switch (grantType as (typeof SUPPORTED_GRANT_TYPES)[number]) {
        case 'authorization_code':
          return answer(
            request,
            await tokenEndpoint.authorizationCode(context, {
              code: parameters.code,
              redirectUri: parameters.redirect_uri,
              codeVerifier: parameters.code_verifier,
            }),
            true,
          );
        case 'refresh_token':
          return answer(request, await refreshTokens(request, context, parameters), false);
        case 'client_credentials':
          return tokenEndpoint.clientCredentials(context, { scope: parameters.scope });
      }
    },
  );
}
