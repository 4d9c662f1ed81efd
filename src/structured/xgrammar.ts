// Loads xgrammar's WebAssembly build (@mlc-ai/web-xgrammar). Its lib/index.js is a UMD bundle that
// calls `require` although the package says "type": "module", so Node would load it as ESM and fail:
// it is evaluated here as the CommonJS it is. Only the grammar worker (grammar-worker.ts) loads it:
// a failed internal check calls abort() and leaves the WebAssembly instance unusable.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

/** The part of xgrammar's API this server uses (lib/xgrammar.d.ts). */
export interface XGrammar {
  TokenizerInfo: {
    createTokenizerInfo(
      encodedVocab: string[],
      vocabType?: string,
      prependSpaceInTokenization?: boolean,
      vocabSize?: number,
      stopTokenIds?: number[],
    ): Promise<XTokenizerInfo>;
  };
  GrammarCompiler: { createGrammarCompiler(info: XTokenizerInfo, cacheEnabled?: boolean): Promise<XGrammarCompiler> };
  GrammarMatcher: { createGrammarMatcher(compiled: XCompiledGrammar, overrideStopTokens?: number[]): Promise<XGrammarMatcher> };
}

export interface XTokenizerInfo {
  getVocabSize(): number;
  dispose(): void;
}

export interface XCompiledGrammar {
  dispose(): void;
}

export interface XGrammarCompiler {
  compileJSONSchema(schema: string, anyWhitespace?: boolean, indent?: number, separators?: [string, string], strictMode?: boolean): Promise<XCompiledGrammar>;
  compileBuiltinJSONGrammar(): Promise<XCompiledGrammar>;
  compileGrammar(ebnf: string, rootRule?: string): Promise<XCompiledGrammar>;
  compileStructuralTag(tag: unknown): Promise<XCompiledGrammar>;
  dispose(): void;
}

export interface XGrammarMatcher {
  acceptToken(tokenId: number): boolean;
  getNextTokenBitmask(): Promise<Int32Array>;
  isTerminated(): boolean;
  dispose(): void;
}

export function loadXGrammar(): XGrammar {
  const require = createRequire(import.meta.url);
  const file = require.resolve('@mlc-ai/web-xgrammar');
  const module = { exports: {} as Record<string, unknown> };
  const factory = new Function('require', 'module', 'exports', '__filename', '__dirname', readFileSync(file, 'utf8'));
  factory(require, module, module.exports, file, dirname(file));
  const xg = (module.exports.default ?? module.exports) as XGrammar;
  if (typeof xg.GrammarCompiler?.createGrammarCompiler !== 'function') throw new Error(`${file} did not export xgrammar's GrammarCompiler`);
  return xg;
}
