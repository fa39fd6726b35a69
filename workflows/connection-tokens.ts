import { ActivityFailure, CancellationScope, isCancellation, log, patched } from '@temporalio/workflow';
import type { TokenState } from '../activities';
import { AUTHORIZATION_CODE_EXPIRED, AUTHORIZATION_LOST_IN_FLIGHT, FailureType, REFRESH_TOKEN_LOST_IN_FLIGHT } from '../activities/failure-types';
import { bookkeeping, codeExchange, describeFailure, machineAccountActivation, tokenRefresh } from './connection-activities';
import type { ConnectionState, ConnectionWorkflowInput, RefreshPolicy } from './connection-messages';
import type { UnkeptTokenRevocation } from './connection-unkept-tokens';

/** What the parts of the connection workflow share: its input, its state, and how it tells operators. */
export interface ConnectionContext {
  readonly input: ConnectionWorkflowInput;
  readonly state: ConnectionState;
  /** Provider work (setup, renewals, syncs) exists in this run (PROVIDER_LIFECYCLE_PATCH). */
  readonly providerLifecycle: boolean;
  publishSearchAttributes(): void;
}

export const SLOW_RETRY_MS = 5 * 60 * 1000;
/** Runs started before these settings existed get the values the settings have by default. */
const POLICY_DEFAULTS: Required<Pick<RefreshPolicy, 'marginFraction' | 'minMarginSeconds' | 'triesBeforeExpiry'>> = {
  marginFraction: 0.2,
  minMarginSeconds: 60,
  triesBeforeExpiry: 6,
};
/** Jitter moves a refresh earlier by at most this share of its margin, so it cannot swallow the margin. */
const MAX_JITTER_SHARE = 0.25;
/** Refreshes that scale with the token's lifetime (runs from before fixed the margin). */
const LIFETIME_MARGIN_PATCH = 'refresh-margin-by-lifetime';
/** An authorization that fails while a newer one waits gives way to it (runs from before ended as failed). */
const NEWER_AUTHORIZATION_PATCH = 'newer-authorization-after-failure';
/** A callback that arrives while an exchange waits behind a refresh is taken after it (runs from before dropped it). */
const NEWER_AUTHORIZATION_WHILE_WAITING_PATCH = 'newer-authorization-while-exchange-waits';
/** One that arrives while the connection is marked failed is taken too (runs from before ended as failed). */
const NEWER_AUTHORIZATION_AFTER_MARKED_FAILED_PATCH = 'newer-authorization-after-marked-failed';
/** needs_reauth only for the tokens the refusal was about (runs from before moved the connection whatever it held). */
const NEEDS_REAUTH_AT_VERSION_PATCH = 'needs-reauth-at-token-version';
/** An authorization that fails without failing the connection is audited too (runs from before left no row). */
const AUDIT_FAILED_AUTHORIZATION_PATCH = 'audit-failed-authorization';
/** The failed connection's reason for the refusals of an exchange that have their own. */
const AUTHORIZATION_FAILURE_REASONS: Record<string, string> = {
  [FailureType.authorizationLostInFlight]: AUTHORIZATION_LOST_IN_FLIGHT,
  [FailureType.authorizationCodeExpired]: AUTHORIZATION_CODE_EXPIRED,
};
/** The needs_reauth reason each final refusal of a refresh records. */
const NEEDS_REAUTH_REASONS: Record<string, string> = {
  [FailureType.grantRevoked]: 'invalid_grant',
  [FailureType.refreshTokenLostInFlight]: REFRESH_TOKEN_LOST_IN_FLIGHT,
};

/**
 * The connection's tokens, as the workflow knows them (versions and times, never the tokens): the
 * first authorization or a re-consent, refreshes before expiry, and needs_reauth when the grant is gone.
 * Code exchanges and refreshes run one after the other, and at most one refresh at a time.
 */
export class ConnectionTokens {
  private refreshInFlight: Promise<void> | undefined;
  private refreshScope: CancellationScope | undefined;
  private tokenWriter: Promise<void> = Promise.resolve();

  constructor(
    private readonly connection: ConnectionContext,
    private readonly unkeptTokens: UnkeptTokenRevocation,
  ) {}

  private get state(): ConnectionState {
    return this.connection.state;
  }

  private get connectionId(): string {
    return this.connection.input.connectionId;
  }

  authorize(authorizationId: string, codeExpiresAt: number | undefined): Promise<void> {
    return this.exclusively(async () => {
      // A newer callback that arrived while an earlier token write finished is the next one's to take;
      // runs from before dropped it. The patch is asked only then, so it marks the histories it changes.
      const { state } = this;
      if (state.pendingAuthorizationId === authorizationId || !patched(NEWER_AUTHORIZATION_WHILE_WAITING_PATCH)) {
        state.pendingAuthorizationId = undefined;
        state.pendingCodeExpiresAt = undefined;
      }
      await this.firstTokens(async () => {
        try {
          return await codeExchange.exchangeAuthorizationCode({ connectionId: this.connectionId, authorizationId, ...(codeExpiresAt === undefined ? {} : { codeExpiresAt }) });
        } finally {
          this.unkeptTokens.afterExchange();
        }
      }, authorizationId);
    });
  }

  /**
   * A callback answered while the connection was being marked failed belongs to the user's newer
   * authorization: the connection goes back to pending and takes it (the exchange accepts a failed
   * connection). True when it did.
   */
  takeNewerAuthorizationAfterFailure(): boolean {
    const { state } = this;
    if (state.status !== 'failed' || !state.pendingAuthorizationId || !patched(NEWER_AUTHORIZATION_AFTER_MARKED_FAILED_PATCH)) return false;
    state.status = 'pending';
    return true;
  }

  activateMachineAccount(): Promise<void> {
    return this.exclusively(async () => {
      this.state.pendingActivation = false;
      await this.firstTokens(() => machineAccountActivation.activateMachineAccount({ connectionId: this.connectionId }));
    });
  }

  /** Both the timer and the freshToken update come here, so two refreshes never run at once. */
  refreshOnce(): Promise<void> {
    this.refreshInFlight ??= this.exclusively(() => this.refreshTokens()).finally(() => {
      this.refreshInFlight = undefined;
    });
    return this.refreshInFlight;
  }

  /** A disconnect does not wait for a refresh to finish its retries. */
  cancelRefresh(): void {
    this.refreshScope?.cancel();
  }

  /**
   * An attempt given up on may have stored good tokens after the refusal: then the connection stays
   * active on them, and their state is taken instead.
   */
  async markNeedsReauth(reason: string, message: string): Promise<void> {
    if (patched(NEEDS_REAUTH_AT_VERSION_PATCH)) {
      const movedOn = await bookkeeping.markConnectionNeedsReauth({ connectionId: this.connectionId, reason, expectedVersion: this.state.tokenVersion });
      if (movedOn) {
        this.applyTokens(movedOn);
        this.state.lastError = undefined;
        return;
      }
    } else {
      await bookkeeping.markConnectionNeedsReauth({ connectionId: this.connectionId, reason });
    }
    this.state.status = 'needs_reauth';
    this.state.lastError = { kind: reason, message, at: Date.now() };
  }

  /** Code exchanges and refreshes write the same token version, so they run one after the other. */
  private exclusively(work: () => Promise<void>): Promise<void> {
    const run = this.tokenWriter.then(work);
    this.tokenWriter = run.catch(() => undefined);
    return run;
  }

  /** A first authorization or a re-consent: the tokens it yields replace whatever the connection had. */
  private async firstTokens(obtain: () => Promise<TokenState>, authorizationId?: string): Promise<void> {
    const { state } = this;
    try {
      this.applyTokens(await obtain());
      state.status = 'active';
      state.lastError = undefined;
      state.invalidation = undefined;
      if (this.connection.providerLifecycle) state.setUpDueAt = Date.now();
    } catch (error) {
      if (!(error instanceof ActivityFailure)) throw error;
      const failure = describeFailure(error);
      state.lastError = { ...failure, kind: AUTHORIZATION_FAILURE_REASONS[failure.kind] ?? failure.kind };
      log.warn('authorization could not be completed', { connectionId: this.connectionId, kind: state.lastError.kind });
      // A re-consent that fails leaves the existing grant as it was; a first one leaves nothing to keep,
      // unless the user authorized again meanwhile: the main loop takes that newer code next.
      if (state.status === 'pending' && !(state.pendingAuthorizationId && patched(NEWER_AUTHORIZATION_PATCH))) {
        await bookkeeping.markConnectionFailed({ connectionId: this.connectionId, reason: state.lastError.kind, ...(authorizationId ? { authorizationId } : {}) });
        state.status = 'failed';
      } else if (patched(AUDIT_FAILED_AUTHORIZATION_PATCH)) {
        await bookkeeping.auditFailedAuthorization({
          connectionId: this.connectionId,
          reason: state.lastError.kind,
          reauthorization: state.status !== 'pending',
          ...(authorizationId ? { authorizationId } : {}),
        });
      }
    }
  }

  private async refreshTokens(): Promise<void> {
    const { state } = this;
    if (state.status !== 'active' || state.disconnectRequest) return;
    const scope = new CancellationScope();
    this.refreshScope = scope;
    const policy = { ...POLICY_DEFAULTS, ...this.connection.input.refreshPolicy };
    const activities = tokenRefresh(state.accessTokenExpiresAt! - Date.now(), policy.triesBeforeExpiry);
    try {
      this.applyTokens(await scope.run(() => activities.refreshConnectionTokens({ connectionId: this.connectionId, expectedVersion: state.tokenVersion })));
      state.refreshCount += 1;
      state.lastRefreshedAt = Date.now();
      state.lastError = undefined;
    } catch (error) {
      if (isCancellation(error)) return; // a disconnect arrived; the main loop handles it
      if (!(error instanceof ActivityFailure)) throw error;
      state.lastError = describeFailure(error);
      const needsReauthReason = NEEDS_REAUTH_REASONS[state.lastError.kind];
      if (needsReauthReason) await this.markNeedsReauth(needsReauthReason, state.lastError.message);
      // Whatever removed the connection underneath us, finishing the disconnect leaves nothing behind.
      else if (state.lastError.kind === FailureType.connectionGone) state.disconnectRequest ??= { requestedBy: { type: 'system' }, receivedAt: Date.now() };
      // A refusal that needs an operator (our credentials, an unreadable secret): keep the grant, try again slowly.
      else state.refreshDueAt = Date.now() + SLOW_RETRY_MS;
    } finally {
      this.refreshScope = undefined;
      // A refresh an update ran (or its invalid_grant) reaches Temporal Web now, not when the loop next wakes.
      this.connection.publishSearchAttributes();
    }
  }

  private applyTokens(tokens: TokenState): void {
    const { state } = this;
    state.tokenVersion = tokens.tokenVersion;
    state.accessTokenExpiresAt = tokens.accessTokenExpiresAt;
    state.refreshDueAt = patched(LIFETIME_MARGIN_PATCH)
      ? refreshDueAt(tokens.accessTokenExpiresAt, Date.now(), this.connection.input.refreshPolicy)
      : fixedMarginRefreshDueAt(tokens.accessTokenExpiresAt, Date.now(), this.connection.input.refreshPolicy);
    state.refreshMarginMs = tokens.accessTokenExpiresAt - state.refreshDueAt;
  }
}

/**
 * The margin is a share of the token's lifetime, between the least and the most margin, and never
 * more than half the lifetime: short-lived tokens are refreshed neither in a loop nor late, and long-
 * lived ones keep the margin that leaves room for retries.
 */
export function refreshDueAt(expiresAt: number, now: number, configured: RefreshPolicy): number {
  const policy = { ...POLICY_DEFAULTS, ...configured };
  const lifetime = Math.max(0, expiresAt - now);
  const scaled = Math.min(policy.marginSeconds * 1000, Math.max(policy.minMarginSeconds * 1000, lifetime * policy.marginFraction));
  const jitter = Math.random() * Math.min(policy.jitterSeconds * 1000, scaled * MAX_JITTER_SHARE);
  return expiresAt - Math.min(scaled + jitter, lifetime / 2);
}

/** How runs from before LIFETIME_MARGIN_PATCH computed it; a token shorter than the margin still gets half its life. */
function fixedMarginRefreshDueAt(expiresAt: number, now: number, policy: RefreshPolicy): number {
  const margin = (policy.marginSeconds + Math.random() * policy.jitterSeconds) * 1000;
  return Math.max(expiresAt - margin, now + (expiresAt - now) / 2);
}
