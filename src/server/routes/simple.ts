// The small routes: GET /v1/models, POST /v1/encode, GET /health, GET /metrics.
import type { Context } from 'koa';
import { validateEncodeRequest, type EncodeResponse, type ModelList } from '../../protocol/index.js';
import { readJsonBody } from '../body.js';
import { invalid } from '../errors.js';
import type { ServerDeps } from '../generation.js';

export function modelsRoute(ctx: Context, deps: ServerDeps): void {
  const body: ModelList = {
    object: 'list',
    data: [
      {
        id: deps.modelName,
        object: 'model',
        created: deps.createdAt,
        owned_by: 'webgpu-llm',
        root: deps.modelName,
        parent: null,
        max_model_len: deps.engine.sessionLen,
      },
    ],
  };
  ctx.body = body;
}

export async function encodeRoute(ctx: Context, deps: ServerDeps): Promise<void> {
  const checked = validateEncodeRequest(await readJsonBody(ctx, deps.maxBodyBytes));
  if (!checked.ok) throw invalid(checked.error.message, checked.error.param);
  const { input, add_bos } = checked.value;
  const encode = (text: string) => deps.engine.codec.encode(text, { addSpecialTokens: add_bos ?? true });
  const body: EncodeResponse =
    typeof input === 'string'
      ? (() => {
          const ids = encode(input);
          return { input_ids: ids, length: ids.length };
        })()
      : (() => {
          const ids = input.map(encode);
          return { input_ids: ids, length: ids.map((i) => i.length) };
        })();
  ctx.body = body;
}

export function healthRoute(ctx: Context, deps: ServerDeps): void {
  const health = deps.engine.health();
  ctx.status = health.ready ? 200 : 503;
  ctx.body = health.ready ? { status: 'ok' } : { status: 'unavailable', reason: health.reason ?? 'not ready' };
}

export function metricsRoute(ctx: Context, deps: ServerDeps): void {
  ctx.type = 'text/plain; version=0.0.4; charset=utf-8';
  ctx.body = deps.metrics.render(deps.engine.stats());
}
