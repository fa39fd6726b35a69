/** The fakes send traffic to this machine only, whatever address they are handed. */
export function assertLoopback(url: string): void {
  const { hostname } = new URL(url);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(hostname)) throw new Error(`fakes send only to loopback addresses, not to ${hostname}`);
}
