/**
 * Server-to-server addresses. Browsers, and the claims of tokens, name the public URLs (the issuer,
 * REALITY_PUBLIC_URL); one of our servers calling another may have to reach it elsewhere (a compose
 * service name, an internal load balancer): API_INTERNAL_URL, REALITY_INTERNAL_URL.
 */
export interface ServerAddress {
  publicUrl: string;
  internalUrl: string;
}

function asDirectory(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

/** `url` at the same path under `internalUrl` when it lies under `publicUrl` (same origin, path below); else `url` itself. */
export function internalUrlOf(url: string, address: ServerAddress): string {
  const target = new URL(url);
  const base = new URL(asDirectory(address.publicUrl));
  if (target.origin !== base.origin) return url;
  let rest: string;
  if (asDirectory(target.pathname) === base.pathname && !target.pathname.endsWith('/')) rest = '';
  else if (target.pathname.startsWith(base.pathname)) rest = target.pathname.slice(base.pathname.length);
  else return url;
  return new URL(`./${rest}${target.search}`, asDirectory(address.internalUrl)).toString();
}
