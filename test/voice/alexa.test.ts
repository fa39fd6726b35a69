import { randomUUID } from 'node:crypto';
import { WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptAlexaGrant, acceptGrantRefusal } from '../../api/plugins/voice/accept-grant';
import { findVoiceDevice } from '../../db/queries/voice-devices';
import { startTemporalDevServer } from '../helpers/temporal';
import { dayOf } from '../helpers/voice-devices';
import {
  acceptGrantDirective,
  auditRows,
  deviceOf,
  linkAccount,
  linkedDevice,
  relayDirective,
  relaySkillEvent,
  resendSkillRequest,
  seedStay,
  sendJson,
  sendSkillRequest,
  startVoiceTestPlatform,
  stoppedServerClock,
  waitFor,
  type VoiceTestPlatform,
} from '../helpers/voice';

/**
 * Alexa through our real endpoints: account linking as Alexa does it, the permission grant
 * (AcceptGrant) relayed by the skill's function or handed in by the app, and the custom skill endpoint
 * with Amazon's request signing, on a Temporal dev server with the fake Login with Amazon.
 */
describe('Alexa', () => {
  let temporal: TestWorkflowEnvironment;
  let voice: VoiceTestPlatform;
  // The api-server's clock, from which the tests say which day it is, as the skill does.
  const { now: serverNow, clock: serverClock } = stoppedServerClock();

  beforeAll(async () => {
    temporal = await startTemporalDevServer();
    voice = await startVoiceTestPlatform(temporal, {}, { serverClock });
  });

  afterAll(async () => {
    await voice?.close();
    await temporal?.teardown();
  });

  const speech = (body: Record<string, unknown>) => (body.response as { outputSpeech?: { text: string } }).outputSpeech?.text;

  it('links an account through authorize, login, consent and the token endpoint; the device and its workflow start', async () => {
    const { platform } = voice;
    const account = await linkAccount(voice, voice.alexaClient);
    expect(account.returnedState).toBe(account.sentState);
    const device = await linkedDevice(platform, account.userId);
    expect(device.workflowId).toBe(`voice-device:alexa:${device.id}`);
    expect((await platform.client.workflow.getHandle(device.workflowId).describe()).status.name).toBe('RUNNING');

    // The workflow reads how long the link lives as it starts.
    const listed = await waitFor(
      () => sendJson(platform, 'GET', '/api/v1/ai/voice-devices', { bearer: account.sessionToken }),
      (answer) => (answer.body.devices as Array<{ workflow: { linkExpiresAt: string | null } }> | undefined)?.[0]?.workflow.linkExpiresAt != null,
      'the workflow view of the link',
    );
    expect(listed.status).toBe(200);
    expect(listed.body.devices).toEqual([
      expect.objectContaining({
        id: device.id,
        platform: 'alexa',
        status: 'linked',
        clientId: voice.alexaClient.clientId,
        linkedAt: expect.any(String),
        unlinkedAt: null,
        alexaEventsPermitted: false,
        workflow: expect.objectContaining({ id: device.workflowId, running: true, status: 'linked', linkExpiresAt: expect.any(String) }),
      }),
    ]);
    // Another user sees none of it.
    const stranger = await platform.signUp(`stranger-${randomUUID()}@example.com`);
    expect((await sendJson(platform, 'GET', '/api/v1/ai/voice-devices', { bearer: stranger.sessionToken })).body).toEqual({ devices: [] });
    expect((await sendJson(platform, 'GET', '/api/v1/ai/voice-devices')).status).toBe(401);
  });

  it('AcceptGrant relayed by the skill function: the workflow exchanges the code at Login with Amazon and answers AcceptGrant.Response', async () => {
    const { platform, amazon } = voice;
    const account = await linkAccount(voice, voice.alexaClient);
    await linkedDevice(platform, account.userId);
    const exchangesBefore = amazon.codeExchanges();
    const { code } = amazon.issueGrantCode();

    const answer = await relayDirective(voice, acceptGrantDirective(code, account.accessToken));
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      event: { header: { namespace: 'Alexa.Authorization', name: 'AcceptGrant.Response', messageId: expect.any(String), payloadVersion: '3' }, payload: {} },
    });
    expect(amazon.codeExchanges()).toBe(exchangesBefore + 1);
    const device = await deviceOf(platform, account.userId);
    expect(device).toMatchObject({ lwaAccessTokenEnc: expect.any(String), lwaRefreshTokenEnc: expect.any(String), lwaGrantCodeEnc: null });
    expect(device.lwaRefreshTokenEnc).not.toContain(code);

    const listed = await sendJson(platform, 'GET', '/api/v1/ai/voice-devices', { bearer: account.sessionToken });
    expect(listed.body.devices).toEqual([expect.objectContaining({ alexaEventsPermitted: true, workflow: expect.objectContaining({ lwaAccessTokenExpiresAt: expect.any(String) }) })]);
    const audits = JSON.stringify([...(await auditRows(platform, 'VoiceAcceptGrant')), ...(await auditRows(platform, 'VoiceCommand'))]);
    expect(audits).toContain(device.id);
    expect(audits).not.toContain(code);
    expect(audits).not.toContain(account.accessToken);
  });

  it("AcceptGrant names the region of the Lambda that received it: recorded on the device, the reports go to that region's gateway", async () => {
    const { platform, amazon } = voice;
    const account = await linkAccount(voice, voice.alexaClient);
    await linkedDevice(platform, account.userId);
    await seedStay(platform, account.userId, { property: 'Fjord house', guest: 'Eva', checkIn: dayOf(serverNow.getTime(), -1), checkOut: dayOf(serverNow.getTime(), 2) });
    const { code, customerId } = amazon.issueGrantCode({ region: 'EU' });
    const exchangesBefore = amazon.codeExchanges();

    for (const region of [null, 'XX' as 'EU']) {
      const refused = await relayDirective(voice, acceptGrantDirective(code, account.accessToken), { region });
      expect(refused.status).toBe(400);
      expect(refused.body).toEqual({ error: 'invalid_alexa_region', message: expect.stringContaining('X-Alexa-Region') });
    }
    expect(amazon.codeExchanges()).toBe(exchangesBefore);

    const answer = await relayDirective(voice, acceptGrantDirective(code, account.accessToken), { region: 'EU' });
    expect(answer.body).toMatchObject({ event: { header: { name: 'AcceptGrant.Response' } } });
    expect(await deviceOf(platform, account.userId)).toMatchObject({ status: 'linked', alexaRegion: 'EU' });
    // The discovery report that follows the grant goes through the EU gateway, and the link stays.
    const delivered = await waitFor(async () => amazon.events(customerId), (events) => events.length > 0, 'the discovery report');
    expect(delivered.map((event) => event.region)).toEqual(['EU']);
    expect(amazon.calls.filter((call) => call.endpoint === 'events' && call.customerId === customerId).map((call) => call.status)).toEqual([202]);
    expect((await deviceOf(platform, account.userId)).status).toBe('linked');
  });

  it('AcceptGrant fails with ACCEPT_GRANT_FAILED for a grantee token that is not a linked device, or a code LWA refuses', async () => {
    const { platform, amazon } = voice;
    const exchangesBefore = amazon.calls.filter((call) => call.endpoint === 'token').length;
    const unknown = await relayDirective(voice, acceptGrantDirective(amazon.issueGrantCode().code, 'not-our-token'));
    expect(unknown.status).toBe(200);
    expect(unknown.body).toEqual({
      event: {
        header: { namespace: 'Alexa.Authorization', name: 'ErrorResponse', messageId: expect.any(String), payloadVersion: '3' },
        payload: { type: 'ACCEPT_GRANT_FAILED', message: expect.any(String) },
      },
    });
    expect(amazon.calls.filter((call) => call.endpoint === 'token').length).toBe(exchangesBefore);

    const account = await linkAccount(voice, voice.alexaClient);
    await linkedDevice(platform, account.userId);
    const refused = await relayDirective(voice, acceptGrantDirective('ANaNotACodeLwaIssued', account.accessToken));
    expect(refused.body).toMatchObject({ event: { header: { name: 'ErrorResponse' }, payload: { type: 'ACCEPT_GRANT_FAILED' } } });
    expect(amazon.calls.at(-1)).toMatchObject({ endpoint: 'token', status: 400, error: 'invalid_grant' });
    expect(await deviceOf(platform, account.userId)).toMatchObject({ lwaAccessTokenEnc: null, lwaGrantCodeEnc: null });

    const malformed = await relayDirective(voice, { ...acceptGrantDirective('code', account.accessToken), payload: { grant: { type: 'Other' } } });
    expect(malformed.body).toMatchObject({ event: { payload: { type: 'ACCEPT_GRANT_FAILED' } } });
  });

  it('the relay takes only its own bearer credential, and answers other directives with INVALID_DIRECTIVE', async () => {
    const directive = acceptGrantDirective('code', 'token');
    const missing = await sendJson(voice.platform, 'POST', '/api/v1/voice/alexa/smart-home', { body: { directive } });
    expect(missing.status).toBe(401);
    expect((await relayDirective(voice, directive, { token: 'x'.repeat(44) })).status).toBe(401);

    const discovery = await relayDirective(voice, {
      header: { namespace: 'Alexa.Discovery', name: 'Discover', messageId: randomUUID(), payloadVersion: '3' },
      payload: { scope: { type: 'BearerToken', token: 'token' } },
    });
    expect(discovery.status).toBe(200);
    expect(discovery.body).toMatchObject({ event: { header: { namespace: 'Alexa', name: 'ErrorResponse' }, payload: { type: 'INVALID_DIRECTIVE' } } });
  });

  it("the app hands in an LWA code for the user's linked device (link_voice_device): 200, 400 invalid_grant, 404 without a device", async () => {
    const { platform, amazon } = voice;
    const account = await linkAccount(voice, voice.alexaClient);
    const device = await linkedDevice(platform, account.userId);
    const link = (code: string, sessionToken = account.sessionToken, extra: Record<string, string> = {}) =>
      sendJson(platform, 'POST', '/api/v1/ai/voice-devices/link', { bearer: sessionToken, body: { platform: 'alexa', code, ...extra } });

    const linked = await link(amazon.issueGrantCode({ region: 'FE' }).code, account.sessionToken, { region: 'FE' });
    expect(linked.status).toBe(200);
    expect(linked.body).toMatchObject({ id: device.id, platform: 'alexa', status: 'linked', alexaEventsPermitted: true });
    expect(await deviceOf(platform, account.userId)).toMatchObject({ alexaRegion: 'FE' });
    expect((await link(amazon.issueGrantCode().code, account.sessionToken, { region: 'MARS' })).status).toBe(400);

    const refused = await link('ANaExpiredOrForged');
    expect(refused.status, JSON.stringify(refused.body)).toBe(400);
    expect(refused.body).toEqual({ error: 'invalid_grant', message: expect.any(String) });

    const nobody = await platform.signUp(`no-device-${randomUUID()}@example.com`);
    const none = await link(amazon.issueGrantCode().code, nobody.sessionToken);
    expect(none.status).toBe(404);
    expect(none.body.error).toBe('no_linked_device');

    expect((await sendJson(platform, 'POST', '/api/v1/ai/voice-devices/link', { bearer: account.sessionToken, body: { platform: 'google', code: 'x' } })).status).toBe(400);
  });

  it('the app gets 503 while Login with Amazon fails: a fault at Amazon is never answered as a refused code', async () => {
    const { platform, amazon } = voice;
    const account = await linkAccount(voice, voice.alexaClient);
    await linkedDevice(platform, account.userId);
    const { code } = amazon.issueGrantCode();
    // Every attempt the device workflow makes fails (the exchange is tried a few times, then given up).
    amazon.switches.failNext(100, 503, 'token');
    try {
      const answer = await sendJson(platform, 'POST', '/api/v1/ai/voice-devices/link', { bearer: account.sessionToken, body: { platform: 'alexa', code } });
      expect(answer.status, JSON.stringify(answer.body)).toBe(503);
      expect(answer.body).toEqual({ error: 'lwa_unavailable', message: expect.any(String) });
    } finally {
      amazon.switches.failNext(0);
    }
    expect(await deviceOf(platform, account.userId)).toMatchObject({ status: 'linked', lwaGrantCodeEnc: null });
  });

  it("a refusal by the device workflow is told apart: an unlinking device is gone (404), anything else may work later (503)", async () => {
    const { platform, amazon } = voice;
    const account = await linkAccount(voice, voice.alexaClient);
    const device = (await findVoiceDevice(platform.db, (await linkedDevice(platform, account.userId)).id))!;
    // What the workflow's update answers is the unit's collaborator here: each refusal it can give, as Temporal's client throws it.
    const refusingWith = (type: string) => ({
      workflow: { executeUpdateWithStart: () => Promise.reject(new WorkflowUpdateFailedError('Workflow Update failed', ApplicationFailure.nonRetryable('refused', type))) },
    }) as unknown as Client;
    const accept = (type: string) =>
      acceptAlexaGrant({ db: platform.db, crypto: platform.crypto, config: platform.config, temporal: refusingWith(type) }, device, amazon.issueGrantCode().code, null);

    const unlinking = await accept('VoiceDeviceNotLinked');
    expect(unlinking).toEqual({ accepted: false, reason: 'device_unlinked' });
    expect(acceptGrantRefusal(unlinking.accepted ? '' : unlinking.reason)).toMatchObject({ statusCode: 404, code: 'no_linked_device' });
    const broken = await accept('WorkflowBroke');
    expect(broken).toEqual({ accepted: false, reason: 'device_workflow_failed' });
    expect(acceptGrantRefusal(broken.accepted ? '' : broken.reason)).toMatchObject({ statusCode: 503, code: 'device_workflow_unavailable' });
  });

  it('takes a region only from an event gateway it knows: an endpoint host named like an object property is no region', async () => {
    const account = await linkAccount(voice, voice.alexaClient);
    const alexaUserId = `amzn1.ask.account.${randomUUID()}`;
    for (const apiEndpoint of ['https://constructor', 'https://__proto__', 'https://tostring']) {
      const launch = await sendSkillRequest(voice, { type: 'LaunchRequest', accessToken: account.accessToken, userId: alexaUserId, apiEndpoint });
      expect(launch.status, apiEndpoint).toBe(200);
    }
    expect(await deviceOf(voice.platform, account.userId)).toMatchObject({ alexaUserId, alexaRegion: null });
  });

  it('answers the skill: LinkAccount without a live token, a welcome, today\'s check-ins and check-outs from the reservations, help and stop', async () => {
    const { platform } = voice;
    const unlinked = await sendSkillRequest(voice, { type: 'LaunchRequest' });
    expect(unlinked.status).toBe(200);
    expect(unlinked.body).toMatchObject({ version: '1.0', response: { card: { type: 'LinkAccount' }, shouldEndSession: true } });
    const bogus = await sendSkillRequest(voice, { type: 'LaunchRequest', accessToken: 'eyJ.forged.token' });
    expect(bogus.body).toMatchObject({ response: { card: { type: 'LinkAccount' } } });

    const account = await linkAccount(voice, voice.alexaClient);
    const alexaUserId = `amzn1.ask.account.${randomUUID()}`;
    const launch = await sendSkillRequest(voice, { type: 'LaunchRequest', accessToken: account.accessToken, userId: alexaUserId, apiEndpoint: 'https://api.eu.amazonalexa.com' });
    expect(launch.status).toBe(200);
    expect(speech(launch.body)).toMatch(/welcome/i);
    expect(launch.body).toMatchObject({ response: { shouldEndSession: false, reprompt: { outputSpeech: { type: 'PlainText' } } } });
    expect(await deviceOf(platform, account.userId)).toMatchObject({ alexaUserId, alexaRegion: 'EU' });

    const guests = () => sendSkillRequest(voice, { type: 'IntentRequest', accessToken: account.accessToken, extra: { intent: { name: 'GetTodaysGuestsIntent', confirmationStatus: 'NONE' } } });
    expect(speech((await guests()).body)).toMatch(/no check-ins or check-outs/);
    await seedStay(platform, account.userId, { property: 'Lake cabin', guest: 'Ann Arrival', checkIn: dayOf(serverNow.getTime(), 0), checkOut: dayOf(serverNow.getTime(), 3) });
    await seedStay(platform, account.userId, { property: 'Sea view', guest: 'Dan Departure', checkIn: dayOf(serverNow.getTime(), -2), checkOut: dayOf(serverNow.getTime(), 0) });
    await seedStay(platform, account.userId, { property: 'Old mill', guest: 'Carl Cancelled', checkIn: dayOf(serverNow.getTime(), 0), checkOut: dayOf(serverNow.getTime(), 1), status: 'cancelled' });
    await seedStay(platform, account.userId, { property: 'Hill hut', guest: 'Sam Staying', checkIn: dayOf(serverNow.getTime(), -1), checkOut: dayOf(serverNow.getTime(), 1) });
    const other = await platform.signUp(`other-host-${randomUUID()}@example.com`);
    await seedStay(platform, other.userId, { property: 'Not yours', guest: 'Olga Other', checkIn: dayOf(serverNow.getTime(), 0), checkOut: dayOf(serverNow.getTime(), 2) });
    const answer = speech((await guests()).body)!;
    expect(answer).toContain('Ann Arrival checks in at Lake cabin.');
    expect(answer).toContain('Dan Departure checks out of Sea view.');
    for (const absent of ['Carl', 'Sam', 'Olga']) expect(answer).not.toContain(absent);

    const help = await sendSkillRequest(voice, { type: 'IntentRequest', accessToken: account.accessToken, extra: { intent: { name: 'AMAZON.HelpIntent' } } });
    expect(speech(help.body)).toMatch(/check-ins and check-outs/);
    const stop = await sendSkillRequest(voice, { type: 'IntentRequest', accessToken: account.accessToken, extra: { intent: { name: 'AMAZON.StopIntent' } } });
    expect(stop.body).toMatchObject({ response: { outputSpeech: { text: 'Goodbye.' }, shouldEndSession: true } });
    const ended = await sendSkillRequest(voice, { type: 'SessionEndedRequest', accessToken: account.accessToken, extra: { reason: 'USER_INITIATED' } });
    expect(ended.body).toEqual({ version: '1.0', response: {} });

    const commands = (await auditRows(platform, 'VoiceCommand')).filter((row) => row.user_id === account.userId);
    expect(commands.map((row) => (row.details as { command: string }).command)).toEqual(
      expect.arrayContaining(['LaunchRequest', 'GetTodaysGuestsIntent', 'AMAZON.HelpIntent', 'AMAZON.StopIntent']),
    );
  });

  it('SkillAccountLinked records the skill user id of the token it carries', async () => {
    const account = await linkAccount(voice, voice.alexaClient);
    const alexaUserId = `amzn1.ask.account.${randomUUID()}`;
    const event = await sendSkillRequest(voice, { type: 'AlexaSkillEvent.SkillAccountLinked', userId: alexaUserId, extra: { body: { accessToken: account.accessToken } } });
    expect(event.status).toBe(200);
    await waitFor(() => deviceOf(voice.platform, account.userId), (device) => device.alexaUserId === alexaUserId, 'the skill user id');
  });

  it("SkillAccountLinked relayed by the skill's function records the skill user id and the region of the Lambda; the relay takes nothing but skill events and directives", async () => {
    const account = await linkAccount(voice, voice.alexaClient);
    const alexaUserId = `amzn1.ask.account.${randomUUID()}`;
    const linked = { type: 'AlexaSkillEvent.SkillAccountLinked', userId: alexaUserId, extra: { body: { accessToken: account.accessToken } } };
    const event = await relaySkillEvent(voice, linked, { region: 'FE' });
    expect(event.status).toBe(204);
    expect(await deviceOf(voice.platform, account.userId)).toMatchObject({ alexaUserId, alexaRegion: 'FE' });

    const launch = await relaySkillEvent(voice, { type: 'LaunchRequest', userId: alexaUserId });
    expect(launch.status).toBe(400);
    expect((await relaySkillEvent(voice, linked, { region: 'MARS' as 'EU' })).body.error).toBe('invalid_alexa_region');
  });

  it('refuses forged, tampered, stale, replayed and other skills\' requests with 400, each audited', async () => {
    const { platform } = voice;
    const account = await linkAccount(voice, voice.alexaClient);
    const launch = { type: 'LaunchRequest', accessToken: account.accessToken };
    const rejectionsBefore = (await auditRows(platform, 'VoiceRequestRejected')).length;

    const forger = await sendSkillRequest(voice, launch, { headers: (headers) => ({ ...headers, 'signature-256': Buffer.alloc(256, 7).toString('base64') }) });
    const tampered = await sendSkillRequest(voice, launch, { body: (body) => body.replace('LaunchRequest', 'IntentRequest') });
    const unsigned = await sendSkillRequest(voice, launch, { headers: ({ 'content-type': contentType }) => ({ 'content-type': contentType! }) });
    const foreignCertificateUrl = await sendSkillRequest(voice, launch, { headers: (headers) => ({ ...headers, signaturecertchainurl: 'https://evil.example/echo.api/cert.pem' }) });
    const stale = await sendSkillRequest(voice, { ...launch, timestamp: new Date(Date.now() - 10 * 60_000) });
    const otherSkill = await sendSkillRequest(voice, { ...launch, skillId: 'amzn1.ask.skill.someone-else' });
    for (const refused of [forger, tampered, unsigned, foreignCertificateUrl, stale, otherSkill]) {
      expect(refused.status, refused.requestBody).toBe(400);
      expect(refused.body).toEqual({ error: 'invalid_alexa_request', message: expect.any(String) });
    }

    const first = await sendSkillRequest(voice, launch);
    expect(first.status).toBe(200);
    const replayed = await resendSkillRequest(voice, first);
    expect(replayed.status).toBe(400);
    expect(replayed.body.message).toMatch(/delivered before/);

    const rejections = (await auditRows(platform, 'VoiceRequestRejected')).slice(rejectionsBefore);
    expect(rejections.map((row) => (row.details as { reason: string }).reason)).toEqual([
      'signature',
      'signature',
      'missing_signature',
      'certificate_url',
      'stale_timestamp',
      'wrong_skill',
      'replayed',
    ]);
    expect(JSON.stringify(rejections)).not.toContain(account.accessToken);
  });

  it('a skill event may be an hour old; a skill request of the right skill is still refused past 150 seconds', async () => {
    const account = await linkAccount(voice, voice.alexaClient);
    const lateEvent = await sendSkillRequest(voice, { type: 'AlexaSkillEvent.SkillAccountLinked', timestamp: new Date(Date.now() - 30 * 60_000), extra: { body: { accessToken: account.accessToken } } });
    expect(lateEvent.status).toBe(200);
    const lateRequest = await sendSkillRequest(voice, { type: 'LaunchRequest', accessToken: account.accessToken, timestamp: new Date(Date.now() - 200_000) });
    expect(lateRequest.status).toBe(400);
  });
});
