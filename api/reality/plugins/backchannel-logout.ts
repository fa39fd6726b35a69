import type { FastifyInstance } from 'fastify';
import { oauthErrorSchema } from '../../../platform/oauth-server/errors';
import { apiServerTokenContext } from '../../../platform/sso/api-server-token-context';
import { receivePmLogoutToken } from '../../../platform/sso/portal-backchannel-logout';
import { askToRetryLater } from '../../plugins/errors';
import { answerOAuthErrors } from '../../plugins/oauth/oauth-errors';
import { requestOrigin } from '../../request-origin';
import { safeString } from '../../schemas';
import { isTransientPortalFault } from '../transient-faults';

/**
 * POST /sso/backchannel-logout: OpenID Connect Back-Channel Logout 1.0 section 2.8, the receiver of the
 * logout tokens the api-server's SSO session workflow sends when a PM session ends. 200 once the
 * sessions it names have ended (or when none is live), 400 with the reason for a token that fails
 * validation or was received before, and 503 when the api-server's keys or the database cannot be
 * reached now, so the sender retries. Nothing here signals the workflow: it is the sender.
 */
export default async function backchannelLogout(app: FastifyInstance) {
  const { config } = app.portal;
  const context = { ...apiServerTokenContext(app.portal), logoutTokenSeconds: config.sso.logoutTokenSeconds };
  // What the body parser or the schema refuses is an invalid_request too, not the API's `{ error, message }`.
  answerOAuthErrors(app);

  app.post<{ Body: { logout_token?: string } }>(
    '/sso/backchannel-logout',
    {
      schema: {
        consumes: ['application/x-www-form-urlencoded'],
        body: { type: 'object', properties: { logout_token: safeString(16_384) } },
        response: { 200: { type: 'null' }, 400: oauthErrorSchema, 503: oauthErrorSchema },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      const token = request.body?.logout_token;
      if (!token) return reply.code(400).send({ error: 'invalid_request', error_description: 'logout_token is required' });
      try {
        const outcome = await receivePmLogoutToken(context, token, requestOrigin(request));
        if (!outcome.ok) return reply.code(400).send({ error: 'invalid_request', error_description: `the logout token was refused (${outcome.reason})` });
        request.log.info({ endedSessions: outcome.endedSessions }, 'back-channel logout from the api-server');
        return reply.code(200).send();
      } catch (error) {
        if (!isTransientPortalFault(error)) throw error;
        request.log.warn({ err: error }, 'a back-channel logout could not be processed now; the sender retries');
        return askToRetryLater(reply).send({ error: 'temporarily_unavailable', error_description: 'try again shortly' });
      }
    },
  );
}
