import { ConfigError } from './config';

/**
 * Starts a long-running process and stops it cleanly on SIGINT/SIGTERM. A configuration error
 * ends it at once with the message that names the bad variables, and no stack trace.
 */
export async function runUntilSignalled(name: string, start: () => Promise<() => Promise<void>>): Promise<void> {
  let stop: () => Promise<void>;
  try {
    stop = await start();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`${name}: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  await new Promise<void>((resolve) => {
    const shutdown = (signal: NodeJS.Signals) => {
      console.error(`${name}: ${signal} received, shutting down`);
      stop().then(resolve, (error: unknown) => {
        console.error(`${name}: shutdown failed`, error);
        process.exit(1);
      });
    };
    process.once('SIGINT', shutdown);
    process.once('SIGTERM', shutdown);
  });
}
