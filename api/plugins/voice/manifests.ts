import type { FastifyInstance } from 'fastify';
import { findClient } from '../../../db/queries/oauth-clients';
import type { Config } from '../../../platform/config';
import { accountLinkingOf, NoAccountLinking, type AccountLinkingEndpoints, type AccountLinkingPlatform } from '../../../platform/voice/account-linking-manifests';
import { errorResponseSchema, HttpError } from '../../errors';
import { safeString } from '../../schemas';
import { requireAdminToken } from '../oauth/admin-authentication';
import { ADMIN_CLIENTS_PREFIX, ADMIN_VOICE_CLIENTS_PREFIX } from '../oauth/admin-clients';
import { authorizationServerMetadata } from '../oauth/metadata';

/** Our endpoints as the metadata document names them, and the admin API's paths, for the manifests. */
export function accountLinkingEndpoints(config: Config): AccountLinkingEndpoints {
  const metadata = authorizationServerMetadata(config.authorizationServer.issuer, false);
  return {
    authorizationUrl: metadata.authorization_endpoint,
    tokenUrl: metadata.token_endpoint,
    clientsAdminPath: ADMIN_CLIENTS_PREFIX,
    voiceClientsAdminPath: ADMIN_VOICE_CLIENTS_PREFIX,
  };
}

const strings = { type: 'array', items: { type: 'string' } } as const;
const notes = { notes: strings } as const;

const alexaSchema = {
  type: 'object',
  required: ['accountLinkingRequest', 'notes'],
  properties: {
    accountLinkingRequest: {
      type: 'object',
      required: [
        'type',
        'authorizationUrl',
        'accessTokenUrl',
        'clientId',
        'accessTokenScheme',
        'scopes',
        'domains',
        'defaultTokenExpirationInSeconds',
        'redirectUrls',
        'skipOnEnablement',
      ],
      properties: {
        type: { type: 'string', enum: ['AUTH_CODE'] },
        authorizationUrl: { type: 'string' },
        accessTokenUrl: { type: 'string' },
        clientId: { type: 'string' },
        accessTokenScheme: { type: 'string', enum: ['HTTP_BASIC', 'REQUEST_BODY_CREDENTIALS'] },
        scopes: { ...strings, maxItems: 15 },
        domains: { ...strings, maxItems: 15 },
        defaultTokenExpirationInSeconds: { type: 'integer' },
        redirectUrls: strings,
        skipOnEnablement: { type: 'boolean' },
      },
    },
    ...notes,
  },
} as const;

const googleSchema = {
  type: 'object',
  required: ['accountLinking', 'redirectUris', 'notes'],
  properties: {
    accountLinking: {
      type: 'object',
      required: ['enableAccountCreation', 'linkingType', 'authGrantType', 'appClientId', 'authorizationUrl', 'tokenUrl', 'scopes', 'useBasicAuthHeader'],
      properties: {
        enableAccountCreation: { type: 'boolean' },
        linkingType: { type: 'string', enum: ['OAUTH'] },
        authGrantType: { type: 'string', enum: ['AUTH_CODE'] },
        appClientId: { type: 'string' },
        authorizationUrl: { type: 'string' },
        tokenUrl: { type: 'string' },
        scopes: strings,
        useBasicAuthHeader: { type: 'boolean' },
      },
    },
    redirectUris: strings,
    ...notes,
  },
} as const;

const MANIFESTS: Array<{ platform: AccountLinkingPlatform; path: string; schema: object; summary: string }> = [
  { platform: 'alexa', path: 'alexa-account-linking', schema: alexaSchema, summary: "The Alexa skill manifest's accountLinkingRequest for a voice client (no secret)" },
  { platform: 'google', path: 'google-account-linking', schema: googleSchema, summary: 'The Google account-linking settings for a voice client (no secret)' },
];

/**
 * `GET /api/v1/admin/oauth/voice-clients/:clientId/{alexa,google}-account-linking`, behind the admin
 * token: what the operator pastes into the platform's console, generated from configuration and the
 * client (accountLinkingOf). 404 for an unknown client; 409 for a revoked one, one that is not a voice
 * client, or one of the other platform.
 */
export default async function voiceClientManifests(app: FastifyInstance) {
  const { db, config } = app.services;
  const endpoints = accountLinkingEndpoints(config);
  requireAdminToken(app);

  for (const manifest of MANIFESTS) {
    app.get<{ Params: { clientId: string } }>(
      `${ADMIN_VOICE_CLIENTS_PREFIX}/:clientId/${manifest.path}`,
      {
        schema: {
          summary: manifest.summary,
          params: { type: 'object', required: ['clientId'], properties: { clientId: safeString(200, { minLength: 1 }) } },
          response: { 200: manifest.schema, 401: errorResponseSchema, 404: errorResponseSchema, 409: errorResponseSchema, 503: errorResponseSchema },
        },
      },
      async (request) => {
        const client = await findClient(db, request.params.clientId);
        if (!client) throw new HttpError(404, 'not_found', 'No such client');
        try {
          return accountLinkingOf(client, config, endpoints, manifest.platform);
        } catch (error) {
          if (error instanceof NoAccountLinking) throw new HttpError(409, error.reason, error.message);
          throw error;
        }
      },
    );
  }
}
