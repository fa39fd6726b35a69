import type { FastifyInstance } from 'fastify';

/** Placeholder: filled in by the authorization-server work. */
export default async function authorize(_app: FastifyInstance) {}
