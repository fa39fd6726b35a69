import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApiServer } from '../../api/app';
import { voiceDeviceStatusQuery, type UnlinkDirection } from '../../workflows/voice-device-messages';
import { freePort } from '../helpers/ports';
import { startTemporalDevServer } from '../helpers/temporal';
import {
  acceptGrantDirective,
  adminRequest,
  auditRows,
  deviceOf,
  fulfill,
  introspect,
  linkAccount,
  linkedDevice,
  postAsVoiceClient,
  relayDirective,
  relaySkillEvent,
  sendJson,
  sendSkillRequest,
  startVoiceTestPlatform,
  unlinkedDevice,
  waitFor,
  unrevokedDeviceTokens,
  type LinkedAccount,
  type TestDeviceRow,
  type VoiceClient,
  type VoiceTestPlatform,
} from '../helpers/voice';

/**
 * Unlinking from every direction (Alexa SkillDisabled, Google DISCONNECT, the user in the PM app, the
 * user revoking the grant, an operator, the voice client revoked) revokes every token of the device,
 * ends the platform's side, ends the workflow and audits who asked.
 */
describe('unlinking a voice device', () => {
  let temporal: TestWorkflowEnvironment;
  let voice: VoiceTestPlatform;

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    voice = await startVoiceTestPlatform(temporal);
  });

  afterAll(async () => {
    await voice?.close();
    await temporal?.teardown();
  });

  /** An Alexa link that holds Login with Amazon tokens (AcceptGrant done), with its skill user id known. */
  async function alexaLinkWithPermission(client: VoiceClient = voice.alexaClient) {
    const account = await linkAccount(voice, client);
    await linkedDevice(voice.platform, account.userId);
    const alexaUserId = `amzn1.ask.account.${randomUUID()}`;
    expect((await sendSkillRequest(voice, { type: 'LaunchRequest', accessToken: account.accessToken, userId: alexaUserId })).status).toBe(200);
    const granted = await relayDirective(voice, acceptGrantDirective(voice.amazon.issueGrantCode().code, account.accessToken));
    expect(granted.body).toMatchObject({ event: { header: { name: 'AcceptGrant.Response' } } });
    return { account, alexaUserId, device: await deviceOf(voice.platform, account.userId) };
  }

  /** A Google link whose agent user Home Graph knows (SYNC answered). */
  async function googleLinkSynced() {
    const account = await linkAccount(voice, voice.googleClient);
    const device = await linkedDevice(voice.platform, account.userId);
    expect((await fulfill(voice.platform, account.accessToken, [{ intent: 'action.devices.SYNC' }])).status).toBe(200);
    voice.googleHome.linkAgentUser(device.id);
    return { account, device };
  }

  /**
   * Every token of the device is dead (introspection by its own client), the workflow ended with this
   * direction, the platform's credentials are wiped, and both the request and the unlink are audited.
   */
  async function expectUnlinked(account: LinkedAccount, direction: UnlinkDirection, requestedBy: { actorType: string; actorId?: string; clientRevoked?: boolean }): Promise<TestDeviceRow> {
    const { platform } = voice;
    const device = await unlinkedDevice(platform, account.userId);
    expect(device).toMatchObject({ unlinkReason: direction, lwaAccessTokenEnc: null, lwaRefreshTokenEnc: null, lwaGrantCodeEnc: null });
    expect(await unrevokedDeviceTokens(platform, account.userId)).toBe(0);
    // A revoked client cannot ask at all; its tokens' rows say the same.
    if (requestedBy.clientRevoked !== true) {
      expect(await introspect(platform, account.client, account.accessToken)).toEqual({ active: false });
      expect(await introspect(platform, account.client, account.refreshToken)).toEqual({ active: false });
      const refreshed = await postAsVoiceClient(platform, '/oauth/token', account.client, { grant_type: 'refresh_token', refresh_token: account.refreshToken });
      expect(refreshed.status).toBe(400);
      expect(refreshed.body.error).toBe('invalid_grant');
    }
    expect(await platform.client.workflow.getHandle(device.workflowId).result()).toMatchObject({ status: 'unlinked', direction });

    const requested = (await auditRows(platform, 'VoiceDeviceUnlinkRequested')).filter((row) => (row.details as { deviceId: string }).deviceId === device.id);
    expect(requested).toEqual([
      expect.objectContaining({
        outcome: 'success',
        actor_type: requestedBy.actorType,
        ...(requestedBy.actorId ? { actor_id: requestedBy.actorId } : {}),
        user_id: account.userId,
        client_id: account.client.clientId,
        details: expect.objectContaining({ direction }),
      }),
    ]);
    const unlinked = (await auditRows(platform, 'VoiceDeviceUnlink')).filter((row) => (row.details as { deviceId: string }).deviceId === device.id);
    expect(unlinked).toEqual([expect.objectContaining({ outcome: 'success', details: expect.objectContaining({ direction }) })]);
    return device;
  }

  it('the user unlinks in the PM app: 202, every token revoked, LWA tokens wiped, no more gateway calls', async () => {
    const { platform, amazon } = voice;
    const { account, device } = await alexaLinkWithPermission();
    const stranger = await platform.signUp(`stranger-${randomUUID()}@example.com`);
    const foreign = await sendJson(platform, 'DELETE', `/api/v1/ai/voice-devices/${device.id}`, { bearer: stranger.sessionToken });
    expect(foreign.status).toBe(404);
    expect((await deviceOf(platform, account.userId)).status).toBe('linked');

    const answer = await sendJson(platform, 'DELETE', `/api/v1/ai/voice-devices/${device.id}`, { bearer: account.sessionToken });
    expect(answer.status).toBe(202);
    expect(answer.body).toEqual({ deviceId: device.id, status: 'unlinking' });
    await expectUnlinked(account, 'user', { actorType: 'user', actorId: account.userId });
    // The workflow has ended: whatever the gateway saw from this device, it sees nothing more.
    const gatewayCalls = amazon.calls.filter((call) => call.endpoint === 'events').length;
    expect((await sendSkillRequest(voice, { type: 'LaunchRequest', accessToken: account.accessToken })).body).toMatchObject({ response: { card: { type: 'LinkAccount' } } });
    expect(amazon.calls.filter((call) => call.endpoint === 'events').length).toBe(gatewayCalls);

    const listed = await sendJson(platform, 'GET', '/api/v1/ai/voice-devices', { bearer: account.sessionToken });
    expect(listed.body.devices).toEqual([expect.objectContaining({ id: device.id, status: 'unlinked', unlinkedAt: expect.any(String), unlinkReason: 'user', workflow: expect.objectContaining({ running: false }) })]);
    expect((await sendJson(platform, 'DELETE', `/api/v1/ai/voice-devices/${device.id}`, { bearer: account.sessionToken })).status).toBe(404);
  });

  it('Alexa SkillDisabled, which names only the skill user id, unlinks the device', async () => {
    const { account, alexaUserId } = await alexaLinkWithPermission();
    const event = await sendSkillRequest(voice, { type: 'AlexaSkillEvent.SkillDisabled', userId: alexaUserId, extra: { body: { userInformationPersistenceStatus: 'NOT_PERSISTED' } } });
    expect(event.status).toBe(200);
    await expectUnlinked(account, 'alexa_skill_disabled', { actorType: 'client', actorId: voice.alexaClient.clientId });
  });

  it("Alexa SkillDisabled relayed by the skill's function (where Amazon sends a smart-home skill's events) unlinks the device", async () => {
    const { account, alexaUserId } = await alexaLinkWithPermission();
    const disabled = { type: 'AlexaSkillEvent.SkillDisabled', userId: alexaUserId, extra: { body: { userInformationPersistenceStatus: 'NOT_PERSISTED' } } };
    expect((await relaySkillEvent(voice, disabled, { token: 'x'.repeat(44) })).status).toBe(401);
    const otherSkill = await relaySkillEvent(voice, { ...disabled, skillId: 'amzn1.ask.skill.someone-else' });
    expect(otherSkill.status).toBe(400);
    expect(otherSkill.body.error).toBe('wrong_skill');
    expect((await deviceOf(voice.platform, account.userId)).status).toBe('linked');

    const event = await relaySkillEvent(voice, disabled);
    expect(event.status).toBe(204);
    await expectUnlinked(account, 'alexa_skill_disabled', { actorType: 'client', actorId: voice.alexaClient.clientId });
  });

  it('Google DISCONNECT answers {} and unlinks: exactly one DELETE of the agent user, and the token answers 401 afterwards', async () => {
    const { platform, googleHome } = voice;
    const { account, device } = await googleLinkSynced();
    const answer = await fulfill(platform, account.accessToken, [{ intent: 'action.devices.DISCONNECT' }]);
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({});
    await expectUnlinked(account, 'google_disconnect', { actorType: 'client', actorId: voice.googleClient.clientId });
    expect(googleHome.deletes(device.id)).toBe(1);
    expect(googleHome.calls.filter((call) => call.endpoint === 'deleteAgentUser' && call.agentUserId === device.id)).toHaveLength(1);
    expect(googleHome.isLinked(device.id)).toBe(false);
    expect((await fulfill(platform, account.accessToken, [{ intent: 'action.devices.DISCONNECT' }])).status).toBe(401);
  });

  it('the user revokes the grant at /oauth/grants: the device is unlinked, Home Graph forgets the agent user once', async () => {
    const { platform, googleHome } = voice;
    const { account, device } = await googleLinkSynced();
    const grants = await sendJson(platform, 'GET', '/oauth/grants', { bearer: account.sessionToken });
    const grant = (grants.body.grants as Array<{ id: string; clientId: string }>).find((candidate) => candidate.clientId === voice.googleClient.clientId)!;
    const revoked = await fetch(`${platform.apiUrl}/oauth/grants/${grant.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${account.sessionToken}` } });
    expect(revoked.status).toBe(204);
    await expectUnlinked(account, 'grant_revoked', { actorType: 'user', actorId: account.userId });
    expect(googleHome.deletes(device.id)).toBe(1);
    expect(googleHome.calls.filter((call) => call.endpoint === 'deleteAgentUser' && call.agentUserId === device.id)).toHaveLength(1);
  });

  it('a grant revoked while Temporal cannot be reached ends the link all the same, and deleting the grant again tells the workflow', async () => {
    const { platform, googleHome } = voice;
    const { account, device } = await googleLinkSynced();
    const grants = await sendJson(platform, 'GET', '/oauth/grants', { bearer: account.sessionToken });
    const grant = (grants.body.grants as Array<{ id: string; clientId: string }>).find((candidate) => candidate.clientId === voice.googleClient.clientId)!;
    const revokeGrant = (apiUrl: string) => fetch(`${apiUrl}/oauth/grants/${grant.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${account.sessionToken}` } });
    // The workflow has read its link and sleeps until it expires: only a signal wakes it before then.
    const workflow = platform.client.workflow.getHandle(device.workflowId);
    await waitFor(() => workflow.query(voiceDeviceStatusQuery), (state) => state.linkExpiresAt !== undefined, 'the workflow at rest');

    // The same api-server, whose Temporal client points at a closed port.
    const unreachable = Connection.lazy({ address: '127.0.0.1:1' });
    const withoutTemporal = await buildApiServer({ ...platform.api.services, temporal: new Client({ connection: unreachable }) });
    try {
      const port = await freePort();
      await withoutTemporal.listen({ host: '127.0.0.1', port });
      expect((await revokeGrant(`http://127.0.0.1:${port}`)).status).toBe(204);
    } finally {
      await withoutTemporal.close();
      await unreachable.close();
    }
    // Our side ended with the grant: every token of the device is dead and the device no longer linked.
    expect((await deviceOf(platform, account.userId)).status).toBe('unlinking');
    expect(await unrevokedDeviceTokens(platform, account.userId)).toBe(0);
    expect(await introspect(platform, account.client, account.accessToken)).toEqual({ active: false });
    expect((await fulfill(platform, account.accessToken, [{ intent: 'action.devices.SYNC' }])).status).toBe(401);
    expect(googleHome.deletes(device.id)).toBe(0);

    // The revoked grant can be deleted again while its device is not unlinked: that tells the workflow, which finishes the unlink.
    expect((await revokeGrant(platform.apiUrl)).status).toBe(204);
    await expectUnlinked(account, 'grant_revoked', { actorType: 'user', actorId: account.userId });
    expect(googleHome.deletes(device.id)).toBe(1);
    expect((await revokeGrant(platform.apiUrl)).status).toBe(404);
  });

  it('the platform revokes its refresh token (RFC 7009): the device is unlinked, its LWA tokens wiped or its agent user deleted; an access token alone leaves the link', async () => {
    const { platform, googleHome } = voice;
    const alexa = await alexaLinkWithPermission();
    const google = await googleLinkSynced();
    const revoke = (account: LinkedAccount, token: string) => postAsVoiceClient(platform, '/oauth/revoke', account.client, { token });

    expect((await revoke(google.account, google.account.accessToken)).status).toBe(200);
    expect((await deviceOf(platform, google.account.userId)).status).toBe('linked');

    expect((await revoke(google.account, google.account.refreshToken)).status).toBe(200);
    await expectUnlinked(google.account, 'tokens_revoked', { actorType: 'client', actorId: voice.googleClient.clientId });
    expect(googleHome.deletes(google.device.id)).toBe(1);
    expect((await revoke(alexa.account, alexa.account.refreshToken)).status).toBe(200);
    await expectUnlinked(alexa.account, 'tokens_revoked', { actorType: 'client', actorId: voice.alexaClient.clientId });
  });

  it('a refresh token reused after its successor was used (a leak): the family is revoked and the device unlinked', async () => {
    const { platform, googleHome } = voice;
    const { account, device } = await googleLinkSynced();
    const refresh = (token: string) => postAsVoiceClient(platform, '/oauth/token', account.client, { grant_type: 'refresh_token', refresh_token: token });
    const first = await refresh(account.refreshToken);
    expect(first.status).toBe(200);
    expect((await refresh(first.body.refresh_token as string)).status).toBe(200);

    const reused = await refresh(account.refreshToken);
    expect(reused.status).toBe(400);
    expect(reused.body).toMatchObject({ error: 'invalid_grant' });
    await expectUnlinked(account, 'tokens_revoked', { actorType: 'client', actorId: voice.googleClient.clientId });
    expect(googleHome.deletes(device.id)).toBe(1);
  });

  it('an operator unlinks through the admin API: 202, then 409 once nothing is left', async () => {
    const { account, device } = await alexaLinkWithPermission();
    const path = `/api/v1/admin/voice-devices/${device.id}`;
    expect((await sendJson(voice.platform, 'DELETE', path)).status).toBe(401);
    const seen = await adminRequest(voice.platform, 'GET', path);
    expect(seen.body).toMatchObject({ id: device.id, userId: account.userId, status: 'linked', alexaEventsPermitted: true });
    const answer = await adminRequest(voice.platform, 'DELETE', path);
    expect(answer.status).toBe(202);
    await expectUnlinked(account, 'operator', { actorType: 'operator', actorId: 'admin-api' });
    expect((await adminRequest(voice.platform, 'DELETE', path)).status).toBe(409);
    expect((await adminRequest(voice.platform, 'DELETE', `/api/v1/admin/voice-devices/${randomUUID()}`)).status).toBe(404);
    const listed = await adminRequest(voice.platform, 'GET', `/api/v1/admin/voice-devices?user_id=${account.userId}`);
    expect(listed.body.devices).toEqual([expect.objectContaining({ id: device.id, status: 'unlinked' })]);
  });

  it('revoking the voice client unlinks each of its devices', async () => {
    const created = await adminRequest(voice.platform, 'POST', '/api/v1/admin/oauth/voice-clients', { platform: 'alexa', name: 'Alexa (retired)' });
    const client: VoiceClient = { platform: 'alexa', clientId: created.body.client_id as string, clientSecret: created.body.client_secret as string };
    const first = await alexaLinkWithPermission(client);
    const second = await linkAccount(voice, client);
    await linkedDevice(voice.platform, second.userId);
    const bystander = await linkAccount(voice, voice.alexaClient);
    await linkedDevice(voice.platform, bystander.userId);

    expect((await adminRequest(voice.platform, 'DELETE', `/api/v1/admin/oauth/clients/${client.clientId}`)).status).toBe(200);
    await expectUnlinked(first.account, 'client_revoked', { actorType: 'operator', actorId: 'admin-api', clientRevoked: true });
    await expectUnlinked(second, 'client_revoked', { actorType: 'operator', actorId: 'admin-api', clientRevoked: true });
    expect((await deviceOf(voice.platform, bystander.userId)).status).toBe('linked');
    expect(await introspect(voice.platform, bystander.client, bystander.accessToken)).toMatchObject({ active: true });
  });

  it('a linked device whose workflow is gone is still unlinked: the unlink starts a new run that does it', async () => {
    const { platform } = voice;
    const { account, device } = await alexaLinkWithPermission();
    await platform.client.workflow.getHandle(device.workflowId).terminate('test: the workflow is gone');
    const answer = await sendJson(platform, 'DELETE', `/api/v1/ai/voice-devices/${device.id}`, { bearer: account.sessionToken });
    expect(answer.status).toBe(202);
    await waitFor(() => deviceOf(platform, account.userId), (row) => row.status === 'unlinked', 'the unlink by a new run');
    await expectUnlinked(account, 'user', { actorType: 'user', actorId: account.userId });
  });
});
