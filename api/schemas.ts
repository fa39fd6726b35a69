/**
 * JSON-schema building blocks shared by the routes. PostgreSQL refuses NUL in text, so every string
 * that may reach a query excludes it here, where the answer is a 400 rather than a 500.
 */
export function safeString(maxLength: number, extra: { minLength?: number } = {}) {
  return { type: 'string', maxLength, pattern: '^[^\\u0000]*$', ...extra } as const;
}

