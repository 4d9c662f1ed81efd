// The small routes: GET /v1/models, GET /v1/models/{id}, POST /v1/encode, GET /health, GET /metrics.
import type { Context } from 'koa';
import { validateEncodeRequest, type EncodeResponse, type ModelCard, type ModelList } from '../../protocol/index.js';
import { readJsonBody } from '../body.js';
import { invalid } from '../errors.js';
import { checkModel, type ServerDeps } from '../generation.js';
import { METRICS_CONTENT_TYPE } from '../metrics.js';

function modelCard(deps: ServerDeps): ModelCard {
  return {
    id: deps.modelName,
    object: 'model',
    created: deps.createdAt,
    owned_by: 'webgpu-llm',
    root: deps.modelName,
    parent: null,
    max_model_len: deps.engine.sessionLen,
  };
}

export function modelsRoute(ctx: Context, deps: ServerDeps): void {
  const body: ModelList = { object: 'list', data: [modelCard(deps)] };
  ctx.body = body;
}

/** GET /v1/models/{id} (the openai SDK's models.retrieve): the card, or OpenAI's 404 model_not_found. */
export function modelRoute(ctx: Context, deps: ServerDeps, id: string): void {
  checkModel(deps, id);
  ctx.body = modelCard(deps);
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

export async function metricsRoute(ctx: Context, deps: ServerDeps): Promise<void> {
  const body = await deps.metrics.render(deps.engine.stats());
  ctx.type = METRICS_CONTENT_TYPE;
  ctx.body = body;
}
