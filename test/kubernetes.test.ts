/**
 * deploy/kubernetes/ checked offline, both forms (base: one Redis; sharded: QUEUES over two):
 *
 * - the kustomization builds (`kubectl kustomize`), and every object it yields, and every example
 *   Secret, validates against the Kubernetes and KEDA schemas (kubernetes-models,
 *   @kubernetes-models/keda);
 * - the objects agree with the code: every setting a container is given is one its tier reads,
 *   and the settings parse (the example Secret's values with the ConfigMap's); the ports are the
 *   ones configured and exposed by the images; the probes ask the tiers' own probe paths; KEDA
 *   watches the stream and consumer group the workers use, on every shard, with a lag target;
 *   selectors, references and grace periods hold together.
 *
 * A drift fails with the name of what drifted.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DockerfileParser } from 'dockerfile-ast';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT } from '../dev/processes.ts';
import { EdgeEnv, parseEdgeConfig } from '../edge/config.ts';
import { EDGE_PROBES } from '../edge/health.ts';
import { parseWorkerConfig, WorkerEnv } from '../gpu-worker/config.ts';
import { WORKER_PROBES } from '../gpu-worker/health.ts';
import { redisKeys } from '../shared/keys.ts';
import { validateObject } from './helpers/kubernetes.ts';

const KUBERNETES = join(REPO_ROOT, 'deploy/kubernetes');
const hasKubectl = spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status === 0;

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML, checked by the schemas first
type Manifest = any;

const docsOf = (text: string): Manifest[] =>
  parseAllDocuments(text)
    .map((doc) => doc.toJS())
    .filter(Boolean);

/** What `kubectl kustomize <dir>` yields. */
function build(form: string): Manifest[] {
  const text = execFileSync('kubectl', ['kustomize', join(KUBERNETES, form)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return docsOf(text);
}

const find = (objects: Manifest[], kind: string, name: string) => {
  const found = objects.find((object) => object.kind === kind && object.metadata?.name === name);
  expect(found, `${kind}/${name}`).toBeDefined();
  return found;
};

/** The settings each tier reads (its zod schema's keys). */
const settingsOf = (schema: typeof EdgeEnv | typeof WorkerEnv) => new Set(Object.keys(schema.in.shape));

/** A container's environment as the pod gets it: its ConfigMaps' data, then its env, Secrets read from `secret`. */
function environmentOf(container: Manifest, objects: Manifest[], secret: Manifest): Record<string, string> {
  const env: Record<string, string> = {};
  for (const source of container.envFrom ?? []) {
    Object.assign(env, find(objects, 'ConfigMap', source.configMapRef.name).data);
  }
  for (const entry of container.env ?? []) {
    const ref = entry.valueFrom?.secretKeyRef;
    if (ref) {
      expect(ref.name, `${container.name}: env ${entry.name} reads Secret ${ref.name}`).toBe(secret.metadata.name);
      expect(Object.keys(secret.stringData), `${container.name}: env ${entry.name} reads key ${ref.key} of Secret ${ref.name}`).toContain(
        ref.key,
      );
      env[entry.name] = secret.stringData[ref.key];
    } else {
      env[entry.name] = entry.value;
    }
  }
  return env;
}

const exposedPort = (dockerfile: string) =>
  Number(
    DockerfileParser.parse(readFileSync(join(REPO_ROOT, dockerfile), 'utf8'))
      .getInstructions()
      .filter((instruction) => instruction.getKeyword() === 'EXPOSE')
      .at(-1)!
      .getArgumentsContent(),
  );

const hostPort = (url: string) => {
  const { hostname, port } = new URL(url);
  return `${hostname}:${port || '6379'}`;
};

describe.each([
  ['base', 'base/secret.example.yaml'],
  ['sharded', 'sharded/secret.example.yaml'],
])('deploy/kubernetes/%s', (form, secretFile) => {
  const objects = hasKubectl ? build(form) : [];
  const secret = docsOf(readFileSync(join(KUBERNETES, secretFile), 'utf8'))[0];
  const worker = () => find(objects, 'Deployment', 'resnet-worker');
  const edge = () => find(objects, 'Deployment', 'resnet-edge');
  const workerContainer = () => worker().spec.template.spec.containers.find((c: Manifest) => c.name === 'gpu-worker');
  const edgeContainer = () => edge().spec.template.spec.containers.find((c: Manifest) => c.name === 'edge');

  it('builds with kubectl kustomize, and every object and the example Secret validate against the Kubernetes and KEDA schemas', () => {
    expect(hasKubectl, 'kubectl is needed to build the kustomization (.ci/run installs Debian kubernetes-client)').toBe(true);
    expect(objects.map((object) => `${object.kind}/${object.metadata.name}`).sort()).toEqual(
      expect.arrayContaining([
        'ConfigMap/resnet-edge',
        'ConfigMap/resnet-worker',
        'Deployment/resnet-edge',
        'Deployment/resnet-worker',
        'HorizontalPodAutoscaler/resnet-edge',
        'Namespace/resnet-edge',
        'PodDisruptionBudget/resnet-worker',
        'ScaledObject/resnet-worker',
        'Service/resnet-edge',
      ]),
    );
    for (const object of [...objects, secret]) validateObject(object);
    for (const object of objects.filter((o) => o.kind !== 'Namespace')) {
      expect(object.metadata.namespace, `${object.kind}/${object.metadata.name}: namespace`).toBe('resnet-edge');
    }
  });

  it('gives each container only settings its tier reads, and they parse', () => {
    for (const [container, settings, parse] of [
      [workerContainer(), settingsOf(WorkerEnv), parseWorkerConfig],
      [edgeContainer(), settingsOf(EdgeEnv), parseEdgeConfig],
    ] as const) {
      const env = environmentOf(container, objects, secret);
      const unread = Object.keys(env).filter((name) => !settings.has(name));
      expect(unread, `${container.name}: settings it does not read`).toEqual([]);
      expect(() => parse(env), `${container.name}: its settings`).not.toThrow();
    }
  });

  it('runs the worker on one GPU per pod, with its probes on the metrics port, time to finish a batch and a disruption budget', () => {
    const container = workerContainer();
    const env = environmentOf(container, objects, secret);
    expect(container.image).toMatch(/^resnet-edge-worker[:@]/);
    expect(readFileSync(join(REPO_ROOT, 'deploy/gpu-worker/Dockerfile'), 'utf8')).toContain('-t resnet-edge-worker');
    expect(container.resources.limits['nvidia.com/gpu']).toBe(1);
    const metrics = container.ports.find((p: Manifest) => p.name === 'metrics');
    expect(metrics.containerPort).toBe(parseWorkerConfig(env).metricsPort);
    expect(metrics.containerPort).toBe(exposedPort('deploy/gpu-worker/Dockerfile'));
    expect(container.readinessProbe.httpGet).toEqual({ path: WORKER_PROBES.ready, port: 'metrics' });
    expect(container.livenessProbe.httpGet).toEqual({ path: WORKER_PROBES.live, port: 'metrics' });
    expect(Number(worker().spec.template.metadata.annotations['prometheus.io/port'])).toBe(metrics.containerPort);
    expect(worker().spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(60);
    const budget = find(objects, 'PodDisruptionBudget', 'resnet-worker');
    expect(worker().spec.template.metadata.labels).toMatchObject(budget.spec.selector.matchLabels);
  });

  it("scales the workers with KEDA on each shard's lag plus pending entries (the stream and group the workers read), summed", () => {
    const env = environmentOf(workerContainer(), objects, secret);
    const { shards } = parseWorkerConfig(env);
    const scaled = find(objects, 'ScaledObject', 'resnet-worker');
    expect(scaled.spec.scaleTargetRef.name).toBe(worker().metadata.name);
    const triggers = scaled.spec.triggers as Manifest[];
    for (const [i, shard] of shards.entries()) {
      const keys = redisKeys(shard.prefix);
      const mine = triggers.filter((t) => t.metadata.address === hostPort(shard.url));
      // Lag alone falls to zero while the workers keep up (their batches are pending, not lagging).
      const lag = mine.find((t) => t.metadata.lagCount !== undefined);
      const pending = mine.find((t) => t.metadata.pendingEntriesCount !== undefined);
      expect(lag, `shard ${i + 1} (${shard.name}): a lagCount trigger`).toBeDefined();
      expect(pending, `shard ${i + 1} (${shard.name}): a pendingEntriesCount trigger`).toBeDefined();
      expect(lag.metadata.activationLagCount, `shard ${i + 1}: activationLagCount (required with lagCount)`).toBeDefined();
      for (const trigger of mine) {
        expect(trigger.type, trigger.name).toBe('redis-streams');
        expect(trigger.metadata, trigger.name).toMatchObject({ stream: keys.stream, consumerGroup: keys.group });
      }
    }
    expect(triggers.length, 'two triggers per shard, no others').toBe(2 * shards.length);
    for (const trigger of triggers) {
      const auth = find(objects, 'TriggerAuthentication', trigger.authenticationRef.name);
      for (const ref of auth.spec.secretTargetRef) {
        expect(ref.name, `${auth.metadata.name}: Secret`).toBe(secret.metadata.name);
        expect(Object.keys(secret.stringData), `${auth.metadata.name}: key`).toContain(ref.key);
      }
    }
    // One replica per `target` of the work in the system: every trigger, added.
    const { formula, target } = scaled.spec.advanced.scalingModifiers;
    expect(
      formula
        .split('+')
        .map((name: string) => name.trim())
        .sort(),
    ).toEqual(triggers.map((t) => t.name).sort());
    expect(Number(target)).toBeGreaterThanOrEqual(parseWorkerConfig(env).batchSize ?? 1);
    // The edges' QUEUE_MAX caps each shard's backlog: it must leave room for the last replicas.
    const edgeConfig = parseEdgeConfig(environmentOf(edgeContainer(), objects, secret));
    expect(edgeConfig.QUEUE_MAX * shards.length, 'QUEUE_MAX x shards >= maxReplicaCount x target').toBeGreaterThanOrEqual(
      scaled.spec.maxReplicaCount * Number(target),
    );
    // Without a live worker the edge's /readyz is 503: scaling to zero needs another readiness path.
    if (scaled.spec.minReplicaCount === 0) expect(edgeContainer().readinessProbe.httpGet.path).not.toBe(EDGE_PROBES.ready);
  });

  it('runs the edge behind its Service with its probes and a CPU autoscaler, and outlives its requests on SIGTERM', () => {
    const container = edgeContainer();
    const env = environmentOf(container, objects, secret);
    const config = parseEdgeConfig(env);
    expect(container.image).toMatch(/^resnet-edge-node[:@]/);
    expect(readFileSync(join(REPO_ROOT, 'deploy/edge/Dockerfile'), 'utf8')).toContain('-t resnet-edge-node');
    const http = container.ports.find((p: Manifest) => p.name === 'http');
    expect(http.containerPort).toBe(config.PORT);
    expect(http.containerPort).toBe(exposedPort('deploy/edge/Dockerfile'));
    const metrics = container.ports.find((p: Manifest) => p.name === 'metrics');
    expect(metrics.containerPort).toBe(config.EDGE_METRICS_PORT);
    expect(Number(edge().spec.template.metadata.annotations['prometheus.io/port'])).toBe(metrics.containerPort);
    expect(container.readinessProbe.httpGet).toEqual({ path: EDGE_PROBES.ready, port: 'http' });
    expect(container.livenessProbe.httpGet).toEqual({ path: EDGE_PROBES.live, port: 'http' });
    expect(edge().spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(config.DEADLINE_MS);
    const service = find(objects, 'Service', 'resnet-edge');
    expect(edge().spec.template.metadata.labels).toMatchObject(service.spec.selector);
    expect(service.spec.ports[0].targetPort).toBe('http');
    const hpa = find(objects, 'HorizontalPodAutoscaler', 'resnet-edge');
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: edge().metadata.name });
    expect(hpa.spec.metrics[0].resource.name).toBe('cpu');
  });
});
