// ESLint for quorumkv (runs in `npm test` before the suite): typescript-eslint's type-aware
// recommended rules. The ones that matter most here: no-floating-promises and no-misused-promises
// (an unawaited promise is an error nobody handles), no-explicit-any, no unused code.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'proto/**', 'scripts/run-tests.js', 'eslint.config.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Wiring declares a `let` that closures read before it is assigned once (src/embed).
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // The code writes `xs[i]!` on indexed access as a statement that the index is in range
      // (tsconfig has no noUncheckedIndexedAccess, so the rule would strip every one of them).
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      // Decoders compare raw bytes and numbers from the wire with enum members on purpose.
      '@typescript-eslint/no-unsafe-enum-comparison': 'off',
      // An async function without await keeps its promise-returning contract for callers (and
      // async generators adapt synchronous sources to AsyncIterable consumers).
      '@typescript-eslint/require-await': 'off',
      // gRPC statuses are plain { code, message } values thrown inside the message reader and
      // caught by the same class (src/grpcserver/server.ts).
      '@typescript-eslint/only-throw-error': ['error', { allow: [{ from: 'file', name: 'CallStatus' }] }],
    },
  },
  {
    // Tests and scripts read untyped JSON (etcdctl -w json, gateway bodies, proto-loader objects).
    files: ['test/**/*.ts', 'scripts/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/restrict-template-expressions': 'off',
      '@typescript-eslint/restrict-plus-operands': 'off',
      '@typescript-eslint/no-base-to-string': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/unbound-method': 'off',
      '@typescript-eslint/no-unused-expressions': 'off',
      // Terminal escape sequences are what the progress-bar tests look for.
      'no-control-regex': 'off',
    },
  },
);
