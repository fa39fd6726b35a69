import { ActivityFailure, log, patched } from '@temporalio/workflow';
import { describeFailure, revocationWindowSeconds, unkeptTokenRevocation } from './connection-activities';
import type { ConnectionContext } from './connection-tokens';

/** Runs from before revoked nothing an exchange set aside (their histories have no such activity). */
const REVOKE_UNKEPT_TOKENS_PATCH = 'revoke-unkept-tokens';

/**
 * Tokens an exchange obtained and will not keep wait in Postgres until the provider has revoked them
 * (activities/unkept-tokens.ts). Through a provider outage that takes up to the revocation window,
 * so it runs beside the token lifecycle, never in its way: a refresh that is due does not wait for
 * it. One revocation runs at a time; one asked for meanwhile runs after it, for the tokens set aside
 * since. Its failure is logged, never the workflow's: each token it gives up on is audited.
 */
export class UnkeptTokenRevocation {
  private running: Promise<void> | undefined;
  private askedAgain = false;

  constructor(private readonly connection: ConnectionContext) {}

  /** A revocation has not answered yet; the workflow neither ends nor continues as new before it has. */
  get inFlight(): boolean {
    return this.running !== undefined;
  }

  /** After every code exchange, successful or not: any of them may have set tokens aside. */
  afterExchange(): void {
    if (patched(REVOKE_UNKEPT_TOKENS_PATCH)) this.start();
  }

  /** The disconnect's last chance, once the grant is revoked and before our copy is wiped. */
  async beforeWipe(): Promise<void> {
    if (!patched(REVOKE_UNKEPT_TOKENS_PATCH)) return;
    this.start();
    await this.running;
  }

  async settled(): Promise<void> {
    await this.running;
  }

  private start(): void {
    if (this.running) {
      this.askedAgain = true;
      return;
    }
    this.running = this.revokeWhileAsked().finally(() => {
      this.running = undefined;
    });
  }

  private async revokeWhileAsked(): Promise<void> {
    const { connectionId } = this.connection.input;
    const windowSeconds = revocationWindowSeconds(this.connection.input);
    const activities = unkeptTokenRevocation(windowSeconds);
    do {
      this.askedAgain = false;
      try {
        await activities.revokeUnkeptTokens({ connectionId, revocationWindowSeconds: windowSeconds });
      } catch (error) {
        if (!(error instanceof ActivityFailure)) throw error;
        log.warn('tokens that will not be kept are not all revoked; each one given up on is audited', { connectionId, kind: describeFailure(error).kind });
      }
    } while (this.askedAgain);
  }
}
