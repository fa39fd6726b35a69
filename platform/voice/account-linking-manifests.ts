import type { OAuthClientRow } from '../../db/queries/oauth-clients';
import type { Config } from '../config';

/**
 * What an operator pastes into the Alexa developer console (the skill manifest's account linking) and
 * the Google Home developer console (account linking of the cloud-to-cloud project), generated from
 * our configuration, our endpoints and the voice client. Never a secret: the client secret was shown
 * once, when the client was created, and is stored only as a hash.
 */

export type AccountLinkingPlatform = NonNullable<OAuthClientRow['voicePlatform']>;

/** Our authorization server's endpoints, and the admin API's paths the notes point an operator to. */
export interface AccountLinkingEndpoints {
  authorizationUrl: string;
  tokenUrl: string;
  /** A client's secret is rotated at `POST <clientsAdminPath>/<clientId>/secret`. */
  clientsAdminPath: string;
  /** Voice clients are created at `POST <voiceClientsAdminPath>`. */
  voiceClientsAdminPath: string;
}

/** The Alexa Skill Management API's `accountLinkingRequest` without `clientSecret`. */
export interface AlexaAccountLinking {
  accountLinkingRequest: {
    type: 'AUTH_CODE';
    authorizationUrl: string;
    accessTokenUrl: string;
    clientId: string;
    accessTokenScheme: 'HTTP_BASIC' | 'REQUEST_BODY_CREDENTIALS';
    scopes: string[];
    domains: string[];
    defaultTokenExpirationInSeconds: number;
    redirectUrls: string[];
    skipOnEnablement: false;
  };
  notes: string[];
}

/** The Actions / Home project's `accountLinking` settings without the client secret, and Google's redirect URIs to check against. */
export interface GoogleAccountLinking {
  accountLinking: {
    enableAccountCreation: false;
    linkingType: 'OAUTH';
    authGrantType: 'AUTH_CODE';
    appClientId: string;
    authorizationUrl: string;
    tokenUrl: string;
    scopes: string[];
    /** Google sends the client id and secret in the request body (client_secret_post). */
    useBasicAuthHeader: false;
  };
  redirectUris: string[];
  notes: string[];
}

function secretNote(client: OAuthClientRow, endpoints: AccountLinkingEndpoints, field: string): string {
  return (
    `${field} is not included: paste the client secret shown once when client ${client.id} was created. ` +
    `If it is lost, rotate it (POST ${endpoints.clientsAdminPath}/${client.id}/secret) and paste the new one.`
  );
}

/**
 * `domains` lists the hosts the account-linking page loads from besides the authorization URL's:
 * our sign-in page lives on the issuer's host, which may differ from PUBLIC_BASE_URL's. Nothing else
 * is loaded (the pages have no scripts and an inline style sheet).
 */
function loginDomains(config: Config): string[] {
  return [...new Set([config.authorizationServer.issuer, config.http.publicBaseUrl].map((url) => new URL(url).hostname))];
}

export function alexaAccountLinking(client: OAuthClientRow, config: Config, endpoints: AccountLinkingEndpoints): AlexaAccountLinking {
  const { authorizationUrl, tokenUrl } = endpoints;
  return {
    accountLinkingRequest: {
      type: 'AUTH_CODE',
      authorizationUrl,
      accessTokenUrl: tokenUrl,
      clientId: client.id,
      accessTokenScheme: client.tokenEndpointAuthMethod === 'client_secret_post' ? 'REQUEST_BODY_CREDENTIALS' : 'HTTP_BASIC',
      scopes: client.scopes,
      domains: loginDomains(config),
      // Alexa uses it when a token answer carries no expires_in; ours always does.
      defaultTokenExpirationInSeconds: config.lifetimes.accessTokenSeconds,
      redirectUrls: client.redirectUris,
      // Every skill request needs the user's account.
      skipOnEnablement: false,
    },
    notes: [secretNote(client, endpoints, 'accountLinkingRequest.clientSecret')],
  };
}

export function googleAccountLinking(client: OAuthClientRow, endpoints: AccountLinkingEndpoints): GoogleAccountLinking {
  const { authorizationUrl, tokenUrl } = endpoints;
  return {
    accountLinking: {
      enableAccountCreation: false,
      linkingType: 'OAUTH',
      authGrantType: 'AUTH_CODE',
      appClientId: client.id,
      authorizationUrl,
      tokenUrl,
      scopes: client.scopes,
      useBasicAuthHeader: false,
    },
    redirectUris: client.redirectUris,
    notes: [
      secretNote(client, endpoints, 'The client secret'),
      'Leave HTTP Basic client authentication off in the console (useBasicAuthHeader: false): the client sends its id and secret in the request body (client_secret_post).',
    ],
  };
}

/** Why a client has no account-linking manifest. */
export class NoAccountLinking extends Error {
  override name = 'NoAccountLinking';

  constructor(
    readonly reason: 'revoked' | 'not_a_voice_client' | 'wrong_platform',
    message: string,
  ) {
    super(message);
  }
}

/** The manifest of a live voice client, for its platform or the one asked for; throws NoAccountLinking. */
export function accountLinkingOf(
  client: OAuthClientRow,
  config: Config,
  endpoints: AccountLinkingEndpoints,
  platform: AccountLinkingPlatform | undefined = undefined,
): AlexaAccountLinking | GoogleAccountLinking {
  if (client.revokedAt !== null) throw new NoAccountLinking('revoked', `client ${client.id} is revoked: create a new voice client`);
  if (client.voicePlatform === null) {
    throw new NoAccountLinking('not_a_voice_client', `client ${client.id} is not a voice client of a platform (create one with POST ${endpoints.voiceClientsAdminPath})`);
  }
  if (platform !== undefined && client.voicePlatform !== platform) {
    throw new NoAccountLinking('wrong_platform', `client ${client.id} is a ${client.voicePlatform} client: ask for its ${client.voicePlatform}-account-linking`);
  }
  return client.voicePlatform === 'alexa' ? alexaAccountLinking(client, config, endpoints) : googleAccountLinking(client, endpoints);
}
