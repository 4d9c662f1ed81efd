// The import graph, checked by `npm run lint:deps` (part of `npm test`): no cycles, and imports only
// run down the layers of docs/architecture.md. Each src/ folder lists what it may import besides
// itself and packages; anything else under src/ is an upward or sideways import and fails the check.
/** @type {Record<string, string[]>} folder -> the src/ folders (or single files) it may import */
const LAYERS = {
  common: [],
  sampling: ['common'],
  tokenizer: ['common'],
  protocol: ['common'],
  gpu: ['common'],
  kv: ['common'],
  checkpoint: ['common'],
  hub: ['common'],
  kernels: ['gpu', 'sampling', 'common'],
  scheduler: ['kv', 'sampling', 'common'],
  runner: ['kernels', 'gpu', 'checkpoint', 'sampling', 'common', 'scheduler/types.ts'],
  // Grammar-constrained decoding (xgrammar in a worker thread); reads tokenizer.json itself.
  structured: ['common'],
  engine: ['runner', 'scheduler', 'kv', 'tokenizer', 'checkpoint', 'sampling', 'gpu', 'structured', 'common'],
  // The server sees the engine only through its interface (types.ts) and the shared prompt builder.
  server: ['engine/types.ts', 'engine/prompt.ts', 'protocol', 'sampling', 'structured/json-schema.ts', 'common'],
  // The quantize command: calibration forwards through the runner, scale search on the matmul kernel.
  quantize: ['runner', 'kernels', 'gpu', 'checkpoint', 'tokenizer', 'common'],
  cli: ['server', 'engine', 'runner', 'quantize', 'hub', 'checkpoint', 'tokenizer', 'sampling', 'gpu', 'protocol', 'common'],
};

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const allowedTarget = (entry) => (entry.endsWith('.ts') ? `^src/${escapeRegExp(entry)}$` : `^src/${entry}/`);

const layerRules = Object.entries(LAYERS).map(([layer, allowed]) => ({
  name: `layer-${layer}`,
  comment: `src/${layer}/ may import only ${allowed.length ? allowed.join(', ') : 'nothing else under src/'}`,
  severity: 'error',
  from: { path: `^src/${layer}/` },
  to: { path: '^src/', pathNot: [`^src/${layer}/`, ...allowed.map(allowedTarget)] },
}));

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'an import cycle: split the shared part into a lower module',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'src-not-to-test-or-bench',
      comment: 'production code must not depend on tests or benches',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'bench-only-test-support',
      comment: 'benches may share test/support/ (synthetic models, CPU references), nothing else under test/',
      severity: 'error',
      from: { path: '^bench/' },
      to: { path: '^test/', pathNot: '^test/support/' },
    },
    {
      name: 'test-support-is-a-library',
      comment: 'test/support/ is imported by tests and benches; it imports neither',
      severity: 'error',
      from: { path: '^test/support/' },
      to: { path: '^(test/(unit|gpu|e2e|helpers)|bench)/' },
    },
    {
      name: 'web-only-protocol-types',
      comment: 'the chat page (web/) shares the wire types with the server and nothing else under src/',
      severity: 'error',
      from: { path: '^web/' },
      to: { path: '^(src|test|bench)/', pathNot: '^src/protocol/types\\.ts$' },
    },
    {
      name: 'src-not-to-web',
      comment: 'the server serves the built page from dist/web/; it never imports web/ sources',
      severity: 'error',
      from: { path: '^(src|test|bench)/' },
      to: { path: '^web/' },
    },
    {
      name: 'unknown-src-folder',
      comment: 'every src/ folder has a place in the layer list above',
      severity: 'error',
      from: { path: '^src/', pathNot: [`^src/(${Object.keys(LAYERS).join('|')})/`, '^src/cli\\.ts$'] },
      to: {},
    },
    ...layerRules,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/|^dist/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.test.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'] },
  },
};
