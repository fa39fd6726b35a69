import { accountLinkingEndpoints } from '../../api/plugins/voice/manifests';
import { findClient, listClients } from '../../db/queries/oauth-clients';
import { AuditLog } from '../../platform/audit';
import { ClientMetadataError, clientMetadataView, VOICE_PLATFORMS, voiceClientMetadata } from '../../platform/oauth-server/client-metadata';
import { ClientRegistry } from '../../platform/oauth-server/client-registry';
import { accountLinkingOf, NoAccountLinking } from '../../platform/voice/account-linking-manifests';
import { CommandFailed, oneOf, stringOption, UsageError, type AdminCommand } from './command';
import { operatorId } from './connection-actions';
import { formatTable, printJson, timeCell } from './table';

/**
 * Voice platforms as clients of our authorization server: created by an operator from the platform's
 * few settings (platform/oauth-server/client-metadata.ts voiceClientMetadata, the same rules as the
 * admin API), listed, and described as the manifest to paste into the platform's console.
 */

export const voiceClientCreateCommand: AdminCommand = {
  name: 'voice-client create',
  synopsis: '<alexa|google> [--name N] [--vendor-id ID] [--project-id ID] [--auth client_secret_basic|client_secret_post] [--scopes "S …"] [--operator NAME] [--json]',
  summary: 'create the OAuth client of an Alexa skill (vendor id: ALEXA_VENDOR_ID) or a Google Home project (project id: GOOGLE_HOME_PROJECT_ID); prints the secret once',
  options: {
    name: { type: 'string' },
    'vendor-id': { type: 'string' },
    'project-id': { type: 'string' },
    auth: { type: 'string' },
    scopes: { type: 'string' },
    operator: { type: 'string' },
    json: { type: 'boolean' },
  },
  positionals: ['platform'],
  async run({ values, positionals }, context) {
    const platform = oneOf(positionals[0]!, VOICE_PLATFORMS, '<platform>');
    const actor = { type: 'operator' as const, id: operatorId(values) };
    const scopes = stringOption(values, 'scopes')?.split(/[\s,]+/).filter(Boolean);
    const { voice } = context.config();
    let metadata;
    try {
      metadata = voiceClientMetadata(
        {
          platform,
          name: stringOption(values, 'name'),
          vendorId: stringOption(values, 'vendor-id'),
          projectId: stringOption(values, 'project-id'),
          tokenEndpointAuthMethod: stringOption(values, 'auth'),
          scopes,
        },
        { alexaVendorId: voice.alexa.vendorId, googleProjectId: voice.google.projectId },
      );
    } catch (error) {
      if (error instanceof ClientMetadataError) throw new UsageError(`voice-client create: ${error.message}`);
      throw error;
    }
    const db = await context.db();
    const { client, clientSecret } = await new ClientRegistry(db, new AuditLog(db)).create(metadata, 'admin', { actor, origin: undefined });
    if (values.json) {
      printJson({ ...clientMetadataView(client), client_secret: clientSecret });
      return 0;
    }
    console.log(`created ${platform} voice client ${client.id} "${client.name}" (${client.tokenEndpointAuthMethod}, scopes ${client.scopes.join(' ')})`);
    console.log(`  redirect URIs  ${client.redirectUris.join('\n                 ')}`);
    console.log(`  client secret  ${clientSecret}`);
    console.log('The secret is shown this once and stored only as a hash: paste it into the console now.');
    console.log(`Next: npm run admin -- voice-client manifest ${client.id}`);
    return 0;
  },
};

export const voiceClientListCommand: AdminCommand = {
  name: 'voice-client list',
  synopsis: '[--json]',
  summary: 'list the voice clients with their platform, authentication and redirect URIs',
  options: { json: { type: 'boolean' } },
  positionals: [],
  async run({ values }, context) {
    const clients = (await listClients(await context.db())).filter((client) => client.kind === 'voice').map(clientMetadataView);
    if (values.json) {
      printJson({ clients });
      return 0;
    }
    const rows = clients.map((client) => [
      client.client_id,
      client.voice_platform ?? '-',
      client.name,
      client.token_endpoint_auth_method,
      client.scopes.join(' '),
      timeCell(client.created_at),
      client.revoked_at === null ? '-' : timeCell(client.revoked_at),
      client.redirect_uris.join(' '),
    ]);
    console.log(formatTable(['CLIENT', 'PLATFORM', 'NAME', 'AUTH', 'SCOPES', 'CREATED', 'REVOKED', 'REDIRECT URIS'], rows));
    console.log(`\n${clients.length} voice client(s).`);
    return 0;
  },
};

export const voiceClientManifestCommand: AdminCommand = {
  name: 'voice-client manifest',
  synopsis: '<clientId> [--json]',
  summary: "print what to paste into the platform's console (Alexa accountLinkingRequest, Google account linking); never the secret",
  options: { json: { type: 'boolean' } },
  positionals: ['clientId'],
  async run({ values, positionals }, context) {
    const clientId = positionals[0]!;
    const config = context.configWithPublicUrls();
    const client = await findClient(await context.db(), clientId);
    if (!client) throw new CommandFailed(`no client ${clientId}`);
    let manifest;
    try {
      manifest = accountLinkingOf(client, config, accountLinkingEndpoints(config));
    } catch (error) {
      if (error instanceof NoAccountLinking) throw new CommandFailed(error.message);
      throw error;
    }
    if (values.json) {
      printJson(manifest);
      return 0;
    }
    // What can be pasted as it is goes to stdout; what the operator must add goes to stderr.
    const { notes, ...pasteable } = manifest;
    printJson(pasteable);
    for (const note of notes) console.error(`note: ${note}`);
    return 0;
  },
};
