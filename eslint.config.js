// ESLint (flat config), run by `npm run lint`: JavaScript's and typescript-eslint's recommended rules
// over every TypeScript and JavaScript file, plus the type-aware promise rules (a forgotten await
// or an async callback where nothing awaits it loses errors). Formatting is prettier's.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'build-*/', 'node_modules/', 'prebuilds/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' },
    },
    rules: {
      // Unused names are errors, except a deliberately ignored one: _name.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
      // Validating input means matching control characters (\x00-\x1f) on purpose.
      'no-control-regex': 'off',
    },
  },
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
    },
  },
  {
    // Test fixtures are child processes driven by messages: an async 'message' handler is how they
    // are written, and a rejection there kills the child, which the test sees.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }] },
  },
  {
    // Areas other branches are rewriting (issues 13, 15): today's findings print as warnings so
    // the tree passes; their owners turn them back into errors when they fix them.
    files: ['lib/engine/**/*.ts', 'bench/scheduler/**/*.ts', 'test/kv-index/**/*.ts', 'test/scheduler/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'warn',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
      'prefer-const': 'warn',
      'no-useless-assignment': 'warn',
      'no-unused-private-class-members': 'warn',
      '@typescript-eslint/no-this-alias': 'warn',
      '@typescript-eslint/no-explicit-any': 'warn',
    },
  },
  {
    // Tests read untyped documents (HTTP bodies, YAML manifests, events): `any` there is a warning,
    // not an error; in the library, the CLI and the benchmarks it stays an error.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'warn' },
  },
);
