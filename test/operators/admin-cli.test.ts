import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import { msToTs } from '@temporalio/common/lib/time';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { statusQuery } from '../../workflows/connection-messages';
import { connectGoogleCalendar, GOOGLE_TEST_CLIENT, startTestPlatform, TEST_PASSWORD, waitForConnectionState, type TestPlatform } from '../helpers/platform';
import { authorizePath, TestBrowser } from '../helpers/oauth-browser';
import { startTemporalDevServer } from '../helpers/temporal';
import { runScript, type CliRun } from '../helpers/cli';

/**
 * `npm run admin` as an operator runs it: a separate process configured only by environment variables,
 * against the platform's real Postgres and Temporal dev server, with the fake Google behind the worker.
 */
describe('admin command line', { timeout: 120_000 }, () => {
  let temporal: TestWorkflowEnvironment;
  let google: FakeGoogle;
  let platform: TestPlatform;
  let connectionId: string;
  let workflowId: string;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    google = await startFakeGoogle(GOOGLE_TEST_CLIENT);
    platform = await startTestPlatform({ temporal, google });
    const { sessionToken } = await platform.signUp('operator-view@example.com');
    ({ connectionId, workflowId } = (await connectGoogleCalendar(platform, sessionToken)).body as { connectionId: string; workflowId: string });
    await waitForConnectionState(platform, workflowId, (state) => state.status === 'active' && (state.sync?.runCount ?? 0) >= 1);
  });

  afterAll(async () => {
    await platform?.close();
    await google?.close();
    await temporal?.teardown();
  });

  function admin(...args: string[]): Promise<CliRun> {
    return adminWith({}, ...args);
  }

  function adminWith(extraEnv: Record<string, string>, ...args: string[]): Promise<CliRun> {
    const env = {
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: platform.config.temporal.namespace,
      TEMPORAL_TASK_QUEUE: platform.config.temporal.taskQueue,
      TEMPORAL_PAYLOAD_KEY: platform.config.payloadEncryption.activeKey!,
      ...extraEnv,
    };
    return runScript('scripts/admin.ts', args, { databaseUrl: platform.config.databaseUrl!, env });
  }

  const listedConnection = z.object({
    connectionId: z.string(),
    provider: z.string().nullable(),
    status: z.string().nullable(),
    workflow: z.object({ execution: z.string(), connectionStatus: z.string().nullable(), nextRefreshAt: z.string().nullable() }).nullable(),
    sources: z.array(z.string()),
  });
  const listing = z.object({
    sources: z.object({ visibility: z.object({ answered: z.boolean(), query: z.string() }) }),
    connections: z.array(listedConnection),
  });

  /** Visibility follows the workflow a moment later, so the listing is read until it agrees. */
  async function listUntil(args: string[], predicate: (rows: z.infer<typeof listedConnection>[]) => boolean) {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const run = await admin('connections', '--json', ...args);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      const parsed = listing.parse(JSON.parse(run.stdout));
      if (predicate(parsed.connections) || Date.now() > deadline) return parsed;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  const tokenVersion = () => platform.db.oneFirst(sql.type(z.object({ v: z.number() }))`SELECT token_version AS v FROM integration_connections WHERE id = ${connectionId}`);
  const refreshGrants = () => google.calls.filter((call) => call.endpoint === 'token' && call.grantType === 'refresh_token' && call.status === 200).length;

  it('lists the connection with its status from the database and its workflow from visibility', async () => {
    const answer = await listUntil(['--provider', 'google-calendar'], (rows) => rows.some((row) => row.workflow?.connectionStatus === 'active'));
    expect(answer.sources.visibility).toMatchObject({ answered: true, query: expect.stringContaining('Provider = "google-calendar"') });
    const row = answer.connections.find((candidate) => candidate.connectionId === connectionId);
    expect(row).toMatchObject({
      provider: 'google-calendar',
      status: 'active',
      workflow: { execution: 'RUNNING', connectionStatus: 'active' },
      sources: ['postgres', 'temporal-visibility'],
    });
    expect(Date.parse(row!.workflow!.nextRefreshAt!)).toBeGreaterThan(Date.now());

    const none = await admin('connections', '--json', '--status', 'needs_reauth');
    expect(listing.parse(JSON.parse(none.stdout)).connections).toEqual([]);

    const table = await admin('connections');
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`^${connectionId}\\s+google-calendar\\s+\\S+\\s+active\\s+running/active\\s`, 'm'));
    expect(table.stdout).toContain('Temporal visibility (namespace default) answered');
  });

  it('refresh runs a refresh in the owning workflow and prints the new expiry', async () => {
    const versionBefore = await tokenVersion();
    const grantsBefore = refreshGrants();
    const stateBefore = await platform.client.workflow.getHandle(workflowId).query(statusQuery);

    const run = await admin('refresh', connectionId, '--json');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const answer = z.object({ tokenVersion: z.number(), accessTokenExpiresAt: z.string() }).parse(JSON.parse(run.stdout));

    expect(answer.tokenVersion).toBeGreaterThan(versionBefore);
    expect(await tokenVersion()).toBe(answer.tokenVersion);
    expect(refreshGrants()).toBe(grantsBefore + 1);
    expect(Date.parse(answer.accessTokenExpiresAt)).toBeGreaterThan(Date.now() + 55 * 60 * 1000);
    // The workflow did it: its own count moved and it knows the version the CLI printed.
    const stateAfter = await platform.client.workflow.getHandle(workflowId).query(statusQuery);
    expect(stateAfter).toMatchObject({ status: 'active', tokenVersion: answer.tokenVersion, refreshCount: stateBefore.refreshCount + 1 });

    // Operators see the new due time in the listing, not the one from before the refresh.
    const dueAfter = stateAfter.refreshDueAt!;
    const listed = await listUntil([], (rows) => rows.some((row) => row.connectionId === connectionId && Date.parse(row.workflow?.nextRefreshAt ?? '') === dueAfter));
    expect(listed.connections.find((row) => row.connectionId === connectionId)?.workflow?.nextRefreshAt).toBe(new Date(dueAfter).toISOString());

    const human = await admin('refresh', connectionId);
    expect(human.stdout).toMatch(new RegExp(`^refreshed ${connectionId}: token version ${answer.tokenVersion + 1}, access token valid until \\d{4}-`));
  });

  it('sync asks the workflow for a sync, naming the operator', async () => {
    const run = await admin('sync', connectionId, '--full', '--operator', 'olga');
    expect(run.code).toBe(0);
    const reasons = async () =>
      platform.db.anyFirst(sql.type(z.object({ reason: z.string() }))`SELECT reason FROM sync_runs WHERE connection_id = ${connectionId} ORDER BY id`);
    const deadline = Date.now() + 20_000;
    while (!(await reasons()).includes('operator:olga') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await reasons()).toContain('operator:olga');
  });

  it('refuses bad usage with exit code 2 and a message naming the problem', async () => {
    const unknown = await admin('frobnicate');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect(unknown.stderr).toContain('usage: npm run admin -- <command>');

    const badId = await admin('refresh', 'not-a-uuid');
    expect(badId.code).toBe(2);
    expect(badId.stderr).toContain('"not-a-uuid" is not a UUID');

    const badOption = await admin('connections', '--status', 'sleepy');
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toContain('--status: "sleepy" is not one of');

    const missing = await admin('disconnect');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('disconnect: missing <connectionId>');

    const unknownConnection = await admin('refresh', '00000000-0000-4000-8000-000000000000');
    expect(unknownConnection.code).toBe(1);
    expect(unknownConnection.stderr).toContain('no connection 00000000-0000-4000-8000-000000000000');
  });

  it('registers the search attributes in a namespace that lacks them, and only once', async () => {
    const namespace = `admin-cli-${Date.now()}`;
    await temporal.connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });
    const registered = async () => Object.keys((await temporal.connection.operatorService.listSearchAttributes({ namespace })).customAttributes ?? {});
    expect(await registered()).not.toContain('ConnectionStatus');

    const first = await adminWith({ TEMPORAL_NAMESPACE: namespace }, 'register-search-attributes', '--json');
    expect(first.code).toBe(0);
    const expected = ['Provider', 'UserId', 'ConnectionStatus', 'NextRefreshAt', 'LastErrorKind'];
    expect(JSON.parse(first.stdout)).toMatchObject({ namespace, added: expected });
    expect(await registered()).toEqual(expect.arrayContaining(expected));

    const second = await adminWith({ TEMPORAL_NAMESPACE: namespace }, 'register-search-attributes');
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(`namespace ${namespace}: every search attribute was registered already`);
  });

  it('rotate-signing-key and reencrypt run the existing scripts, audited as the operator', async () => {
    const keys = { INTEGRATION_ENCRYPTION_KEY: platform.config.encryption.activeKey! };
    const rotation = await adminWith(keys, 'rotate-signing-key', '--operator', 'olga');
    expect(rotation.stderr).toBe('');
    expect(rotation.code).toBe(0);
    expect(rotation.stdout).toMatch(/rotate-signing-key: new signing key \S+ is active/);
    const actors = await platform.db.anyFirst(sql.type(z.object({ actorId: z.string().nullable() }))`
      SELECT actor_id AS "actorId" FROM audit_log WHERE action = 'OAuthSigningKeyRotate' AND actor_type = 'operator'`);
    expect(actors).toEqual(['olga']);

    const reencryption = await adminWith(keys, 'reencrypt');
    expect(reencryption.code).toBe(0);
    expect(reencryption.stdout).toContain('integration_connections.refresh_token_enc: 0 re-encrypted');
    expect(reencryption.stdout).toMatch(/reencrypt: 0 value\(s\) re-encrypted, 0 failed/);

    const withoutKey = await admin('reencrypt');
    expect(withoutKey.code).toBe(2);
    expect(withoutKey.stderr).toContain('INTEGRATION_ENCRYPTION_KEY');
  });

  it('disconnect goes through the workflow, which revokes, wipes and audits the operator', async () => {
    const [refreshToken] = google.liveRefreshTokens();
    const run = await admin('disconnect', connectionId, '--operator', 'olga');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`disconnect requested from ${workflowId} by operator olga`);

    expect(await platform.client.workflow.getHandle(workflowId).result()).toEqual({ status: 'disconnected', revocation: 'revoked' });
    expect(google.isRevoked(refreshToken!)).toBe(true);
    const stored = await platform.db.one(sql.type(z.object({ status: z.string(), refreshTokenEnc: z.string().nullable() }))`
      SELECT status, refresh_token_enc AS "refreshTokenEnc" FROM integration_connections WHERE id = ${connectionId}`);
    expect(stored).toEqual({ status: 'disconnected', refreshTokenEnc: null });
    const audit = await platform.db.any(sql.type(z.object({ action: z.string(), actorType: z.string(), actorId: z.string().nullable() }))`
      SELECT action, actor_type AS "actorType", actor_id AS "actorId" FROM audit_log
      WHERE connection_id = ${connectionId} AND action IN ('OAuthRevoke', 'IntegrationDisconnect') ORDER BY id`);
    expect(audit).toEqual([
      { action: 'OAuthRevoke', actorType: 'operator', actorId: 'olga' },
      { action: 'IntegrationDisconnect', actorType: 'operator', actorId: 'olga' },
    ]);

    const answer = await listUntil([], (rows) => rows.some((row) => row.connectionId === connectionId && row.workflow?.connectionStatus === 'disconnected'));
    expect(answer.connections.find((row) => row.connectionId === connectionId)).toMatchObject({
      status: 'disconnected',
      workflow: { execution: 'COMPLETED', connectionStatus: 'disconnected', nextRefreshAt: null },
    });

    const again = await admin('disconnect', connectionId);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`connection ${connectionId} is already disconnected`);
  });
  const voiceClient = z.object({
    client_id: z.string(),
    client_secret: z.string(),
    voice_platform: z.string(),
    token_endpoint_auth_method: z.string(),
    redirect_uris: z.array(z.string()),
  });

  it('voice-client create makes an Alexa or Google client, shows the secret once and audits the operator', async () => {
    const alexa = await admin('voice-client', 'create', 'alexa', '--vendor-id', 'M2CLIVENDOR', '--operator', 'olga', '--json');
    expect(alexa.stderr).toBe('');
    expect(alexa.code).toBe(0);
    const created = voiceClient.parse(JSON.parse(alexa.stdout));
    expect(created).toMatchObject({ voice_platform: 'alexa', token_endpoint_auth_method: 'client_secret_basic' });
    expect(created.redirect_uris).toEqual([
      'https://pitangui.amazon.com/api/skill/link/M2CLIVENDOR',
      'https://layla.amazon.com/api/skill/link/M2CLIVENDOR',
      'https://alexa.amazon.co.jp/api/skill/link/M2CLIVENDOR',
    ]);
    const audit = await platform.db.one(sql.type(z.object({ actorType: z.string(), actorId: z.string().nullable(), details: z.record(z.unknown()) }))`
      SELECT actor_type AS "actorType", actor_id AS "actorId", details FROM audit_log WHERE action = 'OAuthClientCreate' AND client_id = ${created.client_id}`);
    expect(audit).toMatchObject({ actorType: 'operator', actorId: 'olga', details: { voice_platform: 'alexa' } });
    expect(JSON.stringify(audit)).not.toContain(created.client_secret);

    const google = await adminWith({ GOOGLE_HOME_PROJECT_ID: 'pm-cli-project' }, 'voice-client', 'create', 'google');
    expect(google.code).toBe(0);
    const googleId = /created google voice client (c_\S+)/.exec(google.stdout)?.[1];
    expect(googleId).toBeDefined();
    expect(google.stdout).toMatch(/client secret {2}\S{40,}/);
    expect(google.stdout).toContain('https://oauth-redirect-sandbox.googleusercontent.com/r/pm-cli-project');
    expect(google.stdout).toContain(`Next: npm run admin -- voice-client manifest ${googleId}`);

    const listed = await admin('voice-client', 'list', '--json');
    const clients = z.object({ clients: z.array(z.object({ client_id: z.string(), voice_platform: z.string().nullable() })) }).parse(JSON.parse(listed.stdout)).clients;
    expect(clients.find((client) => client.client_id === created.client_id)?.voice_platform).toBe('alexa');
    expect(clients.find((client) => client.client_id === googleId)?.voice_platform).toBe('google');
    const table = await admin('voice-client', 'list');
    expect(table.stdout).toMatch(new RegExp(`^${created.client_id}\\s+alexa\\s+Alexa\\s+client_secret_basic\\s`, 'm'));
    expect(table.stdout).not.toContain(created.client_secret);
  });

  it('voice-client manifest prints what to paste into the console, never the secret', async () => {
    const created = voiceClient.parse(JSON.parse((await admin('voice-client', 'create', 'alexa', '--vendor-id', 'M2MANIFEST', '--auth', 'client_secret_post', '--json')).stdout));
    const withoutUrl = await admin('voice-client', 'manifest', created.client_id);
    expect(withoutUrl.code).toBe(2);
    expect(withoutUrl.stderr).toContain('PUBLIC_BASE_URL');

    const run = await adminWith({ PUBLIC_BASE_URL: platform.apiUrl }, 'voice-client', 'manifest', created.client_id);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      accountLinkingRequest: expect.objectContaining({
        type: 'AUTH_CODE',
        authorizationUrl: `${platform.config.authorizationServer.issuer}/oauth/authorize`,
        accessTokenUrl: `${platform.config.authorizationServer.issuer}/oauth/token`,
        clientId: created.client_id,
        accessTokenScheme: 'REQUEST_BODY_CREDENTIALS',
        redirectUrls: created.redirect_uris,
      }),
    });
    expect(run.stderr).toContain('note: accountLinkingRequest.clientSecret is not included');
    expect(run.stdout + run.stderr).not.toContain(created.client_secret);

    const withNotes = await adminWith({ PUBLIC_BASE_URL: platform.apiUrl }, 'voice-client', 'manifest', created.client_id, '--json');
    expect(JSON.parse(withNotes.stdout)).toMatchObject({ accountLinkingRequest: { clientId: created.client_id }, notes: [expect.any(String)] });

    const unknown = await adminWith({ PUBLIC_BASE_URL: platform.apiUrl }, 'voice-client', 'manifest', 'c_nope');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no client c_nope');
  });

  it('voice-client refuses bad usage with exit code 2, naming the problem', async () => {
    const platformName = await admin('voice-client', 'create', 'cortana');
    expect(platformName.code).toBe(2);
    expect(platformName.stderr).toContain('<platform>: "cortana" is not one of alexa, google');
    const noProject = await admin('voice-client', 'create', 'google');
    expect(noProject.code).toBe(2);
    expect(noProject.stderr).toContain('GOOGLE_HOME_PROJECT_ID');
    const wrongAuth = await admin('voice-client', 'create', 'google', '--project-id', 'pm-x', '--auth', 'client_secret_basic');
    expect(wrongAuth.code).toBe(2);
    expect(wrongAuth.stderr).toContain('Google authenticates with client_secret_post');
    const subcommand = await admin('voice-client', 'delete');
    expect(subcommand.code).toBe(2);
    expect(subcommand.stderr).toContain('"voice-client delete" is not a command; there are voice-client create, voice-client list, voice-client manifest');
    const badDevice = await admin('voice-devices', 'unlink', 'not-a-uuid');
    expect(badDevice.code).toBe(2);
    expect(badDevice.stderr).toContain('"not-a-uuid" is not a UUID');
  });

  it('voice-devices lists a linked device and unlinks it through its workflow: every token of the device stops working, audited as the operator', async () => {
    const created = voiceClient.parse(JSON.parse((await admin('voice-client', 'create', 'alexa', '--vendor-id', 'M2UNLINK', '--json')).stdout));
    const clientAuth = `Basic ${Buffer.from(`${created.client_id}:${created.client_secret}`).toString('base64')}`;
    const email = 'voice-operator-view@example.com';
    await platform.signUp(email);

    // Alexa's account linking: our login and consent pages, then the code at the token endpoint with HTTP Basic.
    const redirectUri = created.redirect_uris[0]!;
    const browser = new TestBrowser(platform.apiUrl);
    const request = authorizePath({ clientId: created.client_id, redirectUri, scope: 'devices:control' });
    const toLogin = await browser.get(request.path);
    const signedIn = await browser.signIn(email, TEST_PASSWORD, new URL(toLogin.headers.get('location')!, platform.apiUrl).searchParams.get('return_to')!);
    const consent = await browser.get(signedIn.headers.get('location')!);
    const approved = await browser.submit(await consent.text(), {}, 'approve');
    const code = new URL(approved.headers.get('location')!).searchParams.get('code')!;
    const tokenResponse = await fetch(`${platform.apiUrl}/oauth/token`, {
      method: 'POST',
      headers: { authorization: clientAuth, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: request.pkce.verifier }),
    });
    expect(tokenResponse.status).toBe(200);
    const tokens = (await tokenResponse.json()) as { access_token: string; refresh_token: string };

    const deviceListing = z.object({
      devices: z.array(z.object({ id: z.string(), platform: z.string(), userEmail: z.string(), status: z.string(), workflowId: z.string(), linkExpiresAt: z.string().nullable(), unlinkReason: z.string().nullable() })),
    });
    const listed = await admin('voice-devices', 'list', '--user', email, '--json');
    expect(listed.stderr).toBe('');
    const [device, ...others] = deviceListing.parse(JSON.parse(listed.stdout)).devices;
    expect(others).toEqual([]);
    expect(device).toMatchObject({ platform: 'alexa', userEmail: email, status: 'linked', workflowId: `voice-device:alexa:${device!.id}` });
    expect(Date.parse(device!.linkExpiresAt!)).toBeGreaterThan(Date.now() + 300 * 24 * 3600 * 1000);
    const table = await admin('voice-devices', 'list', '--platform', 'alexa');
    expect(table.stdout).toMatch(new RegExp(`^${device!.id}\\s+alexa\\s+${email}\\s+linked\\s`, 'm'));
    expect(table.stdout + listed.stdout).not.toContain(tokens.refresh_token);

    const run = await admin('voice-devices', 'unlink', device!.id, '--operator', 'olga');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`unlink requested from voice-device:alexa:${device!.id} by operator olga`);

    const status = () => platform.db.oneFirst(sql.type(z.object({ status: z.string() }))`SELECT status FROM voice_devices WHERE id = ${device!.id}`);
    const deadline = Date.now() + 30_000;
    while ((await status()) !== 'unlinked' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await status()).toBe('unlinked');
    for (const token of [tokens.access_token, tokens.refresh_token]) {
      const introspection = await fetch(`${platform.apiUrl}/oauth/introspect`, {
        method: 'POST',
        headers: { authorization: clientAuth, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }),
      });
      expect(await introspection.json()).toEqual({ active: false });
    }
    const audit = await platform.db.any(sql.type(z.object({ action: z.string(), actorType: z.string(), actorId: z.string().nullable(), details: z.record(z.unknown()) }))`
      SELECT action, actor_type AS "actorType", actor_id AS "actorId", details FROM audit_log
      WHERE action IN ('VoiceDeviceUnlinkRequested', 'VoiceDeviceUnlink') AND details->>'deviceId' = ${device!.id} ORDER BY id`);
    expect(audit[0]).toMatchObject({ action: 'VoiceDeviceUnlinkRequested', actorType: 'operator', actorId: 'olga', details: { direction: 'operator' } });
    expect(audit.map((row) => row.action)).toContain('VoiceDeviceUnlink');

    const afterwards = deviceListing.parse(JSON.parse((await admin('voice-devices', 'list', '--user', email, '--json')).stdout)).devices;
    expect(afterwards).toEqual([expect.objectContaining({ id: device!.id, status: 'unlinked', unlinkReason: 'operator', linkExpiresAt: null })]);
    const again = await admin('voice-devices', 'unlink', device!.id);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`voice device ${device!.id} is already unlinked`);
  });
});
