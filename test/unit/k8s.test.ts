// k8s/*.yaml and the YAML examples in docs/deployment.md, as `kubectl create` would get them (token
// substituted): each document validates against the official Kubernetes schemas (a strict subset in
// test/fixtures/k8s/schemas.json, see generate-schemas.mjs there), and the invariants that make the
// deployment work hold: probes on /health, one GPU, metrics annotations, the secret the env names.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import AjvModule from 'ajv';
import { parseAllDocuments } from 'yaml';

// Parsed YAML: shapes are checked by the schemas, so the test reads it loosely.
// biome-ignore lint/suspicious/noExplicitAny: manifests are parsed YAML, walked by key path
type Json = Record<string, any>;

const Ajv = AjvModule.default;
const schemas = JSON.parse(readFileSync('test/fixtures/k8s/schemas.json', 'utf8')) as { definitions: Record<string, object> };
const ajv = new Ajv({ allErrors: true, strict: true });
ajv.addSchema({ $id: 'k8s', definitions: schemas.definitions });

const KINDS: Record<string, string> = {
  'apps/v1 Deployment': 'io.k8s.api.apps.v1.Deployment',
  'v1 Secret': 'io.k8s.api.core.v1.Secret',
  'v1 Service': 'io.k8s.api.core.v1.Service',
  'v1 PersistentVolumeClaim': 'io.k8s.api.core.v1.PersistentVolumeClaim',
  'autoscaling/v2 HorizontalPodAutoscaler': 'io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler',
  'networking.k8s.io/v1 Ingress': 'io.k8s.api.networking.v1.Ingress',
};

/** Schema errors of one document, as readable lines; [] when it is valid. */
function schemaErrors(doc: Json): string[] {
  const def = KINDS[`${doc.apiVersion} ${doc.kind}`];
  if (!def) return [`no schema for ${doc.apiVersion} ${doc.kind}`];
  const validate = ajv.getSchema(`k8s#/definitions/${def}`)!;
  if (validate(doc)) return [];
  return (validate.errors ?? []).map((e) => `${doc.kind} ${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
}

function parseYaml(text: string): Json[] {
  const docs = parseAllDocuments(text);
  for (const d of docs) assert.equal(d.errors.map(String), [], 'YAML parses');
  return docs.map((d) => d.toJS() as Json).filter((d) => d !== null);
}

const TOKEN = 'hf_TestToken123';
const rawDeployment = readFileSync('k8s/deployment.yaml', 'utf8');
// What the documented `sed 's/{{HUGGING_FACE_HUB_TOKEN}}/<token>/'` does: the first match on each line.
const sed = (text: string, from: string, to: string) =>
  text
    .split('\n')
    .map((line) => line.replace(from, to))
    .join('\n');
const deploymentDocs = parseYaml(sed(rawDeployment, '{{HUGGING_FACE_HUB_TOKEN}}', TOKEN));
const serviceDocs = parseYaml(readFileSync('k8s/service.yaml', 'utf8'));
const ingressDocs = parseYaml(readFileSync('k8s/ingress.yaml', 'utf8'));
const secret = deploymentDocs.find((d) => d.kind === 'Secret')!;
const deployment = deploymentDocs.find((d) => d.kind === 'Deployment')!;
const service = serviceDocs[0]!;
const pod = deployment.spec.template.spec as Json;
const container = pod.containers[0] as Json;

/** Quantity -> number: "16Gi", "500m", 1. */
function quantity(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^([0-9.]+)(Ki|Mi|Gi|Ti|m|k|M|G|T)?$/.exec(q);
  assert.ok(m, `quantity ${q}`);
  const scale: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Number(m![1]) * (m![2] ? scale[m![2]]! : 1);
}

/** A probe's or service's port, named or numbered, as the container port number. */
function containerPort(port: string | number): number {
  if (typeof port === 'number') return port;
  const named = (container.ports as Json[]).find((p) => p.name === port);
  assert.ok(named, `container port named ${port}`);
  return named!.containerPort;
}

test('deployment.yaml: the token placeholder appears once, and only in the Secret', () => {
  const uncommented = rawDeployment
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n');
  assert.is(uncommented.split('{{HUGGING_FACE_HUB_TOKEN}}').length, 2, 'once outside the usage comments');
  assert.equal(
    deploymentDocs.map((d) => d.kind),
    ['Secret', 'Deployment'],
    'the Secret exists before the pods need it',
  );
  assert.is(secret.stringData.HUGGING_FACE_HUB_TOKEN, TOKEN);
  assert.equal(
    serviceDocs.map((d) => d.kind),
    ['Service'],
  );
});

test('every document validates against the Kubernetes schemas (strict: unknown fields fail)', () => {
  for (const doc of [...deploymentDocs, ...serviceDocs, ...ingressDocs]) assert.equal(schemaErrors(doc), [], `${doc.kind} ${doc.metadata?.name}`);
});

test('the schemas do catch mistakes: a misspelled field, a bad quantity, a wrong apiVersion', () => {
  const typo = structuredClone(deployment);
  typo.spec.template.spec.containers[0].livenesProbe = typo.spec.template.spec.containers[0].livenessProbe;
  assert.match(schemaErrors(typo).join('\n'), /must NOT have additional properties.*livenesProbe/);
  const badMemory = structuredClone(deployment);
  badMemory.spec.template.spec.containers[0].resources.limits.memory = '32gb';
  assert.match(schemaErrors(badMemory).join('\n'), /resources\/limits\/memory/);
  const wrongApi = { ...structuredClone(deployment), apiVersion: 'apps/v1beta1' };
  assert.ok(schemaErrors(wrongApi).length > 0);
  const noContainers = structuredClone(deployment);
  delete noContainers.spec.template.spec.containers;
  assert.match(schemaErrors(noContainers).join('\n'), /must have required property 'containers'/);
});

test('HF_TOKEN comes from the Secret, by the name and key the Secret has', () => {
  const env = (container.env as Json[]).find((e) => e.name === 'HF_TOKEN')!;
  const ref = env.valueFrom.secretKeyRef;
  assert.is(ref.name, secret.metadata.name);
  assert.ok(ref.key in secret.stringData, `key ${ref.key} is in the Secret`);
  const cache = (container.env as Json[]).find((e) => e.name === 'HF_HUB_CACHE');
  assert.ok(cache?.value.startsWith('/models/'), 'downloads land on the model volume');
});

test('resources: one NVIDIA GPU, cpu and memory requests within limits', () => {
  const { requests, limits } = container.resources;
  assert.is(limits['nvidia.com/gpu'], 1);
  assert.is(requests['nvidia.com/gpu'], limits['nvidia.com/gpu'], 'extended resources: requests = limits');
  for (const r of ['cpu', 'memory']) {
    assert.ok(requests[r] !== undefined && limits[r] !== undefined, `${r} request and limit`);
    assert.ok(quantity(requests[r]) <= quantity(limits[r]), `${r}: request <= limit`);
  }
  assert.ok(quantity(limits.memory) >= 8 * 2 ** 30, 'memory for a 7B model');
  assert.is(deployment.spec.strategy.type, 'Recreate', 'no surge pod waiting for a second GPU');
});

test('startup, readiness and liveness probes hit /health on 23333; startup allows a slow load', () => {
  for (const name of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
    const probe = container[name];
    assert.ok(probe, name);
    assert.is(probe.httpGet.path, '/health', name);
    assert.is(containerPort(probe.httpGet.port), 23333, name);
  }
  const startup = container.startupProbe;
  assert.ok(startup.periodSeconds * startup.failureThreshold >= 600, 'at least 10 minutes to load');
  const liveness = container.livenessProbe;
  assert.ok((liveness.periodSeconds ?? 10) * (liveness.failureThreshold ?? 3) >= 30, 'liveness tolerates a long step');
});

test('the pod: serve on 0.0.0.0:23333, model under /models from a hostPath, Prometheus annotations', () => {
  const args = container.args as string[];
  assert.is(args[0], 'serve');
  assert.ok(args[1]!.startsWith('/models/'), args[1]);
  assert.is(args[args.indexOf('--server-name') + 1], '0.0.0.0');
  assert.is(Number(args[args.indexOf('--server-port') + 1]), containerPort('http'));
  assert.is(containerPort('http'), 23333);
  const mount = (container.volumeMounts as Json[]).find((m) => m.mountPath === '/models')!;
  const volume = (pod.volumes as Json[]).find((v) => v.name === mount.name)!;
  assert.ok(volume.hostPath?.path, 'hostPath volume');
  assert.match(rawDeployment, /#\s+persistentVolumeClaim:\n\s*#\s+claimName: webgpu-llm-models/, 'the shared-storage alternative is shown');
  const annotations = deployment.spec.template.metadata.annotations;
  assert.equal(
    [annotations['prometheus.io/scrape'], annotations['prometheus.io/port'], annotations['prometheus.io/path']],
    ['true', String(containerPort('http')), '/metrics'],
  );
  // The image's `USER node` is uid 1000 in node:24-bookworm-slim.
  assert.is(pod.securityContext.runAsUser, 1000);
  assert.match(readFileSync('Dockerfile', 'utf8'), /\nUSER node\n/);
});

test('service.yaml selects the pods and forwards 23333 to their http port', () => {
  const labels = deployment.spec.template.metadata.labels;
  assert.equal(deployment.spec.selector.matchLabels, labels);
  for (const [k, v] of Object.entries(service.spec.selector)) assert.is(labels[k], v, `selector ${k}`);
  assert.is(service.spec.type, 'ClusterIP');
  assert.is(service.spec.ports[0].port, 23333);
  assert.is(containerPort(service.spec.ports[0].targetPort), 23333);
});

test('ingress.yaml: interactive sessions are routed by X-Session-Id to one replica, the rest round-robin', () => {
  assert.equal(
    ingressDocs.map((d) => `${d.kind} ${d.metadata.name}`),
    ['Service webgpu-llm-sessions', 'Ingress webgpu-llm-sessions', 'Ingress webgpu-llm'],
  );
  const services = new Map([...serviceDocs, ...ingressDocs].filter((d) => d.kind === 'Service').map((d) => [d.metadata.name as string, d]));
  const labels = deployment.spec.template.metadata.labels;
  const backends = (ingress: Json) =>
    (ingress.spec.rules as Json[]).flatMap((rule) =>
      (rule.http.paths as Json[]).map((p) => ({ path: p.path as string, pathType: p.pathType as string, service: p.backend.service as Json })),
    );
  for (const ingress of ingressDocs.filter((d) => d.kind === 'Ingress')) {
    assert.is(ingress.spec.ingressClassName, 'nginx', 'the annotations are ingress-nginx ones');
    const annotations = ingress.metadata.annotations as Record<string, string>;
    assert.is(annotations['nginx.ingress.kubernetes.io/proxy-buffering'], 'off', 'streams are not buffered');
    assert.ok(Number(annotations['nginx.ingress.kubernetes.io/proxy-read-timeout']) >= 600, 'long generations are not cut');
    for (const { service: ref } of backends(ingress)) {
      const service = services.get(ref.name);
      assert.ok(service, `the Service ${ref.name} is defined in k8s/`);
      for (const [k, v] of Object.entries(service!.spec.selector)) assert.is(labels[k], v, `${ref.name} selects the pods (${k})`);
      const port = (service!.spec.ports as Json[]).find((p) => p.name === ref.port.name || p.port === ref.port.number);
      assert.ok(port, `${ref.name} has the port the Ingress names`);
      assert.is(containerPort(port!.targetPort), 23333);
    }
  }
  const sessions = ingressDocs.find((d) => d.kind === 'Ingress' && d.metadata.name === 'webgpu-llm-sessions')!;
  // ingress-nginx's nginx variable for the request header X-Session-Id, which the server reads.
  assert.is(sessions.metadata.annotations['nginx.ingress.kubernetes.io/upstream-hash-by'], '$http_x_session_id');
  assert.equal(
    backends(sessions).map((b) => [b.path, b.pathType, b.service.name]),
    [['/v1/chat/interactive', 'Exact', 'webgpu-llm-sessions']],
  );
  assert.match(readFileSync('src/server/routes/interactive.ts', 'utf8'), /ctx\.get\('x-session-id'\)/);
  // The hashed upstream must be its own Service: ingress-nginx keeps one load-balancing setting per upstream.
  const rest = ingressDocs.find((d) => d.kind === 'Ingress' && d.metadata.name === 'webgpu-llm')!;
  assert.is(rest.metadata.annotations['nginx.ingress.kubernetes.io/upstream-hash-by'], undefined);
  assert.equal(
    backends(rest).map((b) => [b.path, b.pathType, b.service.name]),
    [['/', 'Prefix', service.metadata.name]],
  );
  // The schema knows networking.k8s.io/v1: the old extensions/v1beta1 backend fields fail.
  const old = structuredClone(sessions);
  old.spec.rules[0].http.paths[0].backend = { serviceName: 'webgpu-llm-sessions', servicePort: 23333 };
  assert.match(schemaErrors(old).join('\n'), /must NOT have additional properties.*serviceName/);
  const bodyLimit = sessions.metadata.annotations['nginx.ingress.kubernetes.io/proxy-body-size'];
  assert.ok(quantity(bodyLimit.replace(/m$/, 'Mi')) >= 2 ** 20, 'the proxy accepts the server default 1 MiB body');
});

test('docs/deployment.md: every Kubernetes YAML example validates too', () => {
  const docs = readFileSync('docs/deployment.md', 'utf8');
  const blocks = [...docs.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const objects = blocks.flatMap(parseYaml).filter((d) => d.apiVersion && d.kind);
  assert.ok(
    objects.some((d) => d.kind === 'HorizontalPodAutoscaler'),
    'an HPA example',
  );
  assert.ok(
    objects.some((d) => d.kind === 'PersistentVolumeClaim'),
    'a shared-storage claim example',
  );
  for (const doc of objects) assert.equal(schemaErrors(doc), [], `${doc.kind} ${doc.metadata?.name}`);
  const hpa = objects.find((d) => d.kind === 'HorizontalPodAutoscaler')!;
  assert.equal(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
  const pvc = objects.find((d) => d.kind === 'PersistentVolumeClaim')!;
  assert.is(pvc.metadata.name, 'webgpu-llm-models');
  assert.ok(
    pvc.spec.accessModes.some((m: string) => m === 'ReadWriteMany' || m === 'ReadOnlyMany'),
    'shareable by several nodes',
  );
});

test.run();
