import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'slonik';
import { z } from 'zod';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startFakeGoogle, type FakeGoogle } from '../../fakes/google';
import { newGoogleAccountId } from '../../fakes/google-tokens';
import { startFakeMicrosoft, type FakeMicrosoft } from '../../fakes/microsoft';
import { startFakeAirbnb, type FakeAirbnb } from '../../fakes/airbnb';
import { startFakeBooking, type FakeBooking } from '../../fakes/booking';
import { TokenEndpointFaults, type RefreshRecord } from '../../fakes/token-endpoint-faults';
import { connectionColumn } from '../../db/encrypted-columns';
import { GOOGLE_TEST_CLIENT, type TestPlatform } from '../helpers/platform';
import { connectGoogleAccount } from '../helpers/google-calendar';
import { connectMicrosoftCalendar, microsoftEnvironment, MICROSOFT_TEST_CLIENT } from '../helpers/microsoft';
import { AIRBNB_TEST_CLIENT, AIRBNB_WEBHOOK_SECRET, connectAirbnb } from '../helpers/airbnb';
import { BOOKING_TEST_ACCOUNT, connectBooking } from '../helpers/booking';
import { SimulatedClock, startTimeSkippingServer } from '../helpers/temporal';
import { eventually } from '../helpers/eventually';
import { LogCapture } from '../helpers/secret-scan';
import { recordFault } from './fault-ledger';
import { expectNoSecretLeft } from './harness/secret-scan-after-run';
import { fakeProvidersEnvironment, startPlatformOnSimulatedClock } from './harness/simulated-platform';

const MINUTE = 60 * 1000;
const HOUR = 60 * MINUTE;
const PER_PROVIDER = 3;
const EXACT_REASON = 'refresh_token_lost_in_flight';

/** The providers as they behave (shared/protocols.md), and where the fake's settings make the worst case. */
type Variant = 'google' | 'microsoft' | 'microsoft-no-grace' | 'airbnb-no-grace' | 'booking';
type FakeProvider = 'google' | 'microsoft' | 'microsoft-no-grace' | 'airbnb' | 'booking';

/**
 * What must come of a refresh whose answer was lost after the provider acted on it:
 * - Google does not rotate: the token we hold still works;
 * - Microsoft rotates on every refresh and keeps the old token working for a while: its grace saves us;
 * - Microsoft without that grace kills the old token at once: no way back, needs_reauth with the exact reason;
 * - Airbnb rotates only when asked (reset_refresh_token=1), which we never do: the token we hold still works,
 *   grace or none;
 * - Booking.com has no refresh token: the machine account simply exchanges its credentials again.
 */
const ACCEPTABLE: Record<Variant, string[]> = {
  google: ['survived_no_rotation'],
  microsoft: ['survived_via_provider_grace', 'survived_via_previous_token'],
  'microsoft-no-grace': [`needs_reauth:${EXACT_REASON}`],
  'airbnb-no-grace': ['survived_no_rotation'],
  booking: ['survived_no_rotation'],
};

interface Tracked {
  variant: Variant;
  connectionId: string;
  workflowId: string;
  /** The provider's account or authorization the tokens belong to (what the fake records them under). */
  grant: string;
}

/** Every connection's refresh falls due at the same moment, so the lost answers are waited out together. */
const REFRESHES_TOGETHER = { TOKEN_REFRESH_JITTER_SECONDS: '0' };

/**
 * Issue 11, "The worst case": the provider carries a refresh out (rotating the refresh token where it
 * rotates) and then its answer never arrives: the platform's request times out. On the time-skipping
 * server, one refresh of every connection is lost that way; the outcome of each is counted per provider.
 */
describe('a refresh answer lost after the provider rotated', () => {
  let temporal: TestWorkflowEnvironment;
  let clock: SimulatedClock;
  let platform: TestPlatform;
  /** A platform talks to one Microsoft: the fake without grace has its own, on the same Temporal server and clock. */
  let noGracePlatform: TestPlatform;
  let google: FakeGoogle;
  let microsoft: FakeMicrosoft;
  let microsoftNoGrace: FakeMicrosoft;
  let airbnb: FakeAirbnb;
  let booking: FakeBooking;
  let faults: Record<FakeProvider, TokenEndpointFaults>;
  const apiLog = new LogCapture();
  const noGraceApiLog = new LogCapture();
  const sessionTokens: string[] = [];

  beforeAll(async () => {
    temporal = await startTimeSkippingServer();
    clock = await SimulatedClock.of(temporal);
    const fakeFaults = () => new TokenEndpointFaults({ clock: clock.now });
    faults = { google: fakeFaults(), microsoft: fakeFaults(), 'microsoft-no-grace': fakeFaults(), airbnb: fakeFaults(), booking: fakeFaults() };
    google = await startFakeGoogle({ ...GOOGLE_TEST_CLIENT, clock: clock.now, faults: faults.google });
    microsoft = await startFakeMicrosoft({ ...MICROSOFT_TEST_CLIENT, clock: clock.now, faults: faults.microsoft });
    microsoftNoGrace = await startFakeMicrosoft({ ...MICROSOFT_TEST_CLIENT, clock: clock.now, rotationGraceSeconds: 0, faults: faults['microsoft-no-grace'] });
    airbnb = await startFakeAirbnb({
      ...AIRBNB_TEST_CLIENT,
      clock: clock.now,
      accessTokenLifetimeSeconds: 3600,
      rotationGraceSeconds: 0,
      webhook: { secret: AIRBNB_WEBHOOK_SECRET },
      faults: faults.airbnb,
    });
    booking = await startFakeBooking({ ...BOOKING_TEST_ACCOUNT, clock: clock.now, faults: faults.booking });
    platform = await startPlatformOnSimulatedClock(clock, {
      temporal,
      google,
      logDestination: apiLog,
      environment: { ...REFRESHES_TOGETHER, ...fakeProvidersEnvironment({ microsoft, airbnb, booking }) },
    });
    noGracePlatform = await startPlatformOnSimulatedClock(clock, {
      temporal,
      logDestination: noGraceApiLog,
      environment: {
        ...REFRESHES_TOGETHER,
        ...microsoftEnvironment(microsoftNoGrace),
        // Both platforms' histories share the Temporal server: one payload key lets either secret scan decode them all.
        TEMPORAL_PAYLOAD_KEY: platform.config.payloadEncryption.activeKey!,
      },
    });
  });

  afterAll(async () => {
    await Promise.all([platform?.close(), noGracePlatform?.close()]);
    await Promise.all([google?.close(), microsoft?.close(), microsoftNoGrace?.close(), airbnb?.close(), booking?.close(), temporal?.teardown()]);
  });

  const platformOf = (variant: Variant) => (variant === 'microsoft-no-grace' ? noGracePlatform : platform);

  let users = 0;
  const signUp = async (on: TestPlatform) => {
    const signedUp = await on.signUp(`rotate-drop-${++users}@example.com`);
    sessionTokens.push(signedUp.sessionToken);
    return signedUp;
  };

  async function connect(variant: Variant): Promise<Tracked> {
    if (variant === 'google') {
      const account = newGoogleAccountId();
      const connected = await connectGoogleAccount(platform, google, `rotate-drop-${++users}@example.com`, account);
      sessionTokens.push(connected.sessionToken);
      return { variant, connectionId: connected.connectionId, workflowId: connected.workflowId, grant: account };
    }
    const { sessionToken } = await signUp(platformOf(variant));
    if (variant === 'microsoft' || variant === 'microsoft-no-grace') {
      const connected = await connectMicrosoftCalendar(platformOf(variant), variant === 'microsoft' ? microsoft : microsoftNoGrace, sessionToken);
      return { variant, connectionId: connected.connectionId, workflowId: connected.workflowId, grant: connected.oid };
    }
    if (variant === 'airbnb-no-grace') {
      const host = airbnb.createHost([]);
      const connected = await connectAirbnb(platform, sessionToken);
      return { variant, connectionId: connected.connectionId, workflowId: connected.workflowId, grant: host.userId };
    }
    const connected = await connectBooking(platform, sessionToken);
    if (connected.status !== 202) throw new Error(`Booking.com connect answered ${connected.status}`);
    return { variant, connectionId: connected.body.connectionId!, workflowId: connected.body.workflowId!, grant: BOOKING_TEST_ACCOUNT.clientId };
  }

  const connectionRow = ({ variant, connectionId }: Tracked) =>
    platformOf(variant).db.one(sql.type(z.object({ status: z.string(), refreshTokenEnc: z.string().nullable(), fellBack: z.boolean(), reason: z.string().nullable() }))`
      SELECT c.status::text, c.refresh_token_enc AS "refreshTokenEnc",
             EXISTS (SELECT 1 FROM audit_log a WHERE a.connection_id = c.id AND a.action = 'OAuthTokenRefresh' AND a.details->>'fellBackToPreviousGrant' = 'true') AS "fellBack",
             (SELECT details->>'reason' FROM audit_log a WHERE a.connection_id = c.id AND a.action = 'IntegrationNeedsReauth' ORDER BY a.id DESC LIMIT 1) AS reason
      FROM integration_connections c WHERE c.id = ${connectionId}`);

  const faultsOf = (variant: Variant) => faults[variant === 'airbnb-no-grace' ? 'airbnb' : variant];

  /** Whether the refresh token we hold is one the provider would still honour. */
  function stillHonoured(connection: Tracked, refreshToken: string | undefined): boolean {
    if (connection.variant === 'booking') return true; // no refresh token: the machine account's credentials are the grant
    if (refreshToken === undefined) return false;
    if (connection.variant === 'microsoft') return microsoft.liveRefreshTokens(connection.grant).includes(refreshToken);
    if (connection.variant === 'microsoft-no-grace') return microsoftNoGrace.liveRefreshTokens(connection.grant).includes(refreshToken);
    if (connection.variant === 'airbnb-no-grace') return airbnb.liveRefreshTokens().includes(refreshToken);
    return google.liveRefreshTokens().includes(refreshToken);
  }

  async function outcomeOf(connection: Tracked): Promise<string> {
    const records = faultsOf(connection.variant).refreshes.filter((refresh) => refresh.grant === connection.grant);
    const dropped = records.find((refresh) => refresh.lost);
    if (!dropped) return 'fault_not_injected';
    const row = await connectionRow(connection);
    if (row.status !== 'active') return row.status === 'needs_reauth' ? `needs_reauth:${row.reason}` : `status:${row.status}`;
    const stored = row.refreshTokenEnc ? platformOf(connection.variant).crypto.decrypt(row.refreshTokenEnc, connectionColumn(connection.connectionId, 'refresh_token_enc')) : undefined;
    const later: RefreshRecord[] = records.filter((refresh) => refresh.at >= dropped.at && refresh !== dropped && refresh.succeeded && !refresh.lost);
    // Active, but holding nothing the provider honours, or never refreshed again: the user would find out only later.
    if (!stillHonoured(connection, stored) || later.length < 2) return 'silent_loss';
    if (row.fellBack) return 'survived_via_previous_token';
    if (dropped.rotatedTo === undefined) return 'survived_no_rotation';
    if (later[0]!.presented === dropped.presented) return 'survived_via_provider_grace';
    return 'survived_unexplained';
  }

  it('survives through the previous token or the provider grace, and otherwise ends in needs_reauth with the exact reason', { timeout: 240_000 }, async () => {
    await clock.catchUp();
    const connections: Tracked[] = [];
    const variants = ['google', 'microsoft', 'microsoft-no-grace', 'airbnb-no-grace'] as const;
    for (const variant of variants) {
      for (let index = 0; index < PER_PROVIDER; index++) connections.push(await connect(variant));
    }
    connections.push(await connect('booking'));
    const activeAll = async () => {
      const rows = await Promise.all(connections.map(connectionRow));
      return rows.every((row) => row.status === 'active');
    };
    await eventually(activeAll, 60_000, 'every connection active');
    for (const variant of [...variants, 'booking'] as const) {
      faultsOf(variant).loseNextRefreshAnswerOf(connections.filter((connection) => connection.variant === variant).map((connection) => connection.grant), 'timeout');
    }

    // Their first refresh (about 55 minutes in) is carried out upstream and its answer lost.
    await clock.advance(HOUR);

    // A survivor must refresh normally again: another hour, with nothing lost.
    await clock.advance(HOUR);

    const outcomes = await Promise.all(connections.map(async (connection) => ({ variant: connection.variant, outcome: await outcomeOf(connection) })));
    const counts: Record<string, number> = {};
    for (const { variant, outcome } of outcomes) counts[`${variant} ${outcome}`] = (counts[`${variant} ${outcome}`] ?? 0) + 1;
    recordFault({
      fault: 'refresh carried out (and rotated) upstream, answer lost (timeout): Google, Microsoft with grace, Microsoft without grace, Airbnb without grace, Booking.com',
      injected: outcomes.filter(({ outcome }) => outcome !== 'fault_not_injected').length,
      outcomes: counts,
      invariant: `crash-safe refresh: survives where the provider did not rotate, or via the kept previous token or the provider's grace; a rotation with no way back ends in needs_reauth "${EXACT_REASON}", never a silent loss`,
    });

    const unacceptable = outcomes.filter(({ variant, outcome }) => !ACCEPTABLE[variant].includes(outcome));
    expect(unacceptable).toEqual([]);
  });

  it('leaves no secret in plaintext in the databases, the Temporal histories or the api-servers\' logs', async () => {
    const providerSecrets = [...google.issuedSecrets(), ...microsoft.issuedSecrets(), ...microsoftNoGrace.issuedSecrets(), ...airbnb.issuedSecrets(), ...booking.issuedSecrets()];
    await expectNoSecretLeft('refresh answers lost after the provider rotated', platform, { logs: [apiLog.text], ownSecrets: sessionTokens, providerSecrets });
    await expectNoSecretLeft('refresh answers lost after the provider rotated (Microsoft without grace)', noGracePlatform, {
      logs: [noGraceApiLog.text],
      ownSecrets: sessionTokens,
      providerSecrets,
    });
  });
});
