// Query and form parameters as the fakes read them.

export type Params = Record<string, string | undefined>;

// Repeated or non-string parameters count as missing, which is what a strict server makes of them.
export function paramsOf(value: unknown): Params {
  const params: Params = {};
  if (typeof value !== 'object' || value === null) return params;
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry === 'string') params[key] = entry;
  }
  return params;
}
