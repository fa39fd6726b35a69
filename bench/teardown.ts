/** What a suite has running that must go away however the bench ends. */
export interface Stoppable {
  close(): Promise<void>;
  /** For the process 'exit' event, which cannot wait. */
  killNow(): void;
}

/**
 * The bench's running stacks: Ctrl-C (or SIGTERM), an unhandled rejection or an uncaught exception
 * closes them (processes and databases) before the bench exits, and an exit without a close still
 * kills their processes.
 */
export class Teardowns {
  private readonly running = new Set<Stoppable>();

  constructor() {
    const onSignal = (signal: NodeJS.Signals) => {
      console.error(`bench: ${signal} received, tearing down`);
      void this.closeAll().finally(() => process.exit(130));
    };
    const onFailure = (error: unknown) => {
      console.error('bench: failed, tearing down:', error);
      void this.closeAll().finally(() => process.exit(1));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    process.once('unhandledRejection', onFailure);
    process.once('uncaughtException', onFailure);
    process.once('exit', () => {
      for (const stoppable of this.running) stoppable.killNow();
    });
  }

  /** Runs `use` on what `start` gives, and closes it afterwards, also when `use` fails. */
  async with<T extends Stoppable, R>(start: () => Promise<T>, use: (running: T) => Promise<R>): Promise<R> {
    const running = await start();
    this.running.add(running);
    try {
      return await use(running);
    } finally {
      await running.close();
      this.running.delete(running);
    }
  }

  private async closeAll(): Promise<void> {
    for (const stoppable of this.running) await stoppable.close().catch((error: unknown) => console.error('bench teardown:', error));
    this.running.clear();
  }
}
