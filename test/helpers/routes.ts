import type { FastifyInstance } from 'fastify';

/**
 * Every route an app really has, as `METHOD /path/{param}`, read from Fastify's own route tree
 * (independent of any OpenAPI plugin): `printRoutes` nests each path under its parent by four
 * columns per level. HEAD, which Fastify answers for every GET by itself, is left out.
 */
export function registeredRoutes(app: FastifyInstance): string[] {
  const routes: string[] = [];
  const prefixes: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^(.*?)[└├]── (\S+)(?: \(([^)]+)\))?$/.exec(line);
    if (!match) continue;
    const depth = match[1]!.length / 4;
    const path = (prefixes[depth - 1] ?? '') + match[2]!;
    prefixes[depth] = path;
    for (const method of match[3]?.split(', ') ?? []) {
      if (method !== 'HEAD') routes.push(`${method} ${path.replace(/:(\w+)/g, '{$1}')}`);
    }
  }
  return routes;
}
