import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

export default defineConfig([
  globalIgnores(['node_modules/', '.data/', '.tools/', 'coverage/']),
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    rules: {
      // `_name` marks a deliberately unused parameter or binding.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
    },
  },
  // Layers point one way: entry points (api/, scripts/, worker/) → workflows/ → activities/ → platform/ → db/.
  layer(['db/**/*.ts'], ['platform', 'activities', 'workflows', 'api', 'scripts', 'worker']),
  layer(['platform/**/*.ts'], ['activities', 'workflows', 'api', 'scripts', 'worker']),
  layer(['activities/**/*.ts'], ['workflows', 'api', 'scripts', 'worker']),
  layer(['workflows/**/*.ts'], ['api', 'scripts', 'worker']),
]);

/** Files matching `files` may not import from the folders named in `above`. */
function layer(files, above) {
  return {
    files,
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        { patterns: [{ regex: `^(\\.\\./)+(${above.join('|')})(/|$)`, message: 'a lower layer does not import a higher one' }] },
      ],
    },
  };
}
