import { registerSearchAttributes } from '../../worker/search-attributes';
import { CUSTOM_SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';
import { runReencrypt } from '../reencrypt';
import { runRotateSigningKey } from '../rotate-signing-key';
import type { AdminCommand } from './command';
import { operatorId } from './connection-actions';
import { printJson } from './table';

/** Keys and cluster set-up: the same code as the stand-alone scripts, reachable from one command line. */

export const rotateSigningKeyCommand: AdminCommand = {
  name: 'rotate-signing-key',
  synopsis: '[--operator NAME]',
  summary: 'rotate the access-token signing key (the previous key verifies for OAUTH_SIGNING_KEY_GRACE_SECONDS)',
  options: { operator: { type: 'string' } },
  positionals: [],
  run: async ({ values }) => runRotateSigningKey(operatorId(values)),
};

export const reencryptCommand: AdminCommand = {
  name: 'reencrypt',
  synopsis: '',
  summary: 're-encrypt every stored secret under the active key; resumable, prints progress',
  options: {},
  positionals: [],
  run: async () => runReencrypt(),
};

export const registerSearchAttributesCommand: AdminCommand = {
  name: 'register-search-attributes',
  synopsis: '[--json]',
  summary: "register the workflows' custom search attributes in TEMPORAL_NAMESPACE (once per cluster; safe to repeat)",
  options: { json: { type: 'boolean' } },
  positionals: [],
  async run({ values }, context) {
    const { namespace, address } = context.config().temporal;
    const added = await registerSearchAttributes(await context.temporalConnection(), namespace);
    const all = CUSTOM_SEARCH_ATTRIBUTES.map((key) => `${key.name} (${key.type})`);
    if (values.json) printJson({ address, namespace, added, registered: CUSTOM_SEARCH_ATTRIBUTES.map((key) => key.name) });
    else if (added.length === 0) console.log(`${address} namespace ${namespace}: every search attribute was registered already: ${all.join(', ')}`);
    else console.log(`${address} namespace ${namespace}: registered ${added.join(', ')}; now present: ${all.join(', ')}`);
    return 0;
  },
};
