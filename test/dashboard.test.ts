/**
 * deploy/grafana/resnet-edge.json against the code: every query parses as PromQL
 * (@prometheus-io/lezer-promql, the Prometheus project's own parser), names only metrics the
 * worker or the Node edge exports (a histogram's _bucket, _sum, _count series included), groups or
 * filters only by labels those metrics carry (or Prometheus's own target labels), and matches
 * the values the code gives its labels (`outcome`, `route`). A
 * panel that drifts from the code fails with its title and what drifted.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../dev/processes.ts';
import { ROUTES } from '../edge/middleware/request-metrics/index.ts';
import { EdgeMetrics } from '../edge/node/metrics.ts';
import { JOB_OUTCOMES, WorkerMetrics } from '../gpu-worker/metrics.ts';

interface Panel {
  id: number;
  title: string;
  datasource?: { uid?: string };
  targets?: { expr: string; datasource?: { uid?: string } }[];
}
const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'deploy/grafana/resnet-edge.json'), 'utf8')) as {
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; type: string }[] };
};

/** The datasource variable every panel and query names (Grafana's syntax, not a JS template). */
const DATASOURCE = '$' + '{datasource}';
/** The values the code gives these labels: a query matching another value would show nothing. */
const KNOWN_VALUES: Record<string, readonly string[]> = { outcome: JOB_OUTCOMES, route: [...ROUTES, 'other'] };
/** Prometheus adds these to every scraped series. */
const TARGET_LABELS = ['job', 'instance'];

/** Series name -> its labels, as the tiers export them (histograms as their three series). */
function exportedSeries(): Map<string, Set<string>> {
  const series = new Map<string, Set<string>>();
  for (const registry of [new WorkerMetrics().registry, new EdgeMetrics().registry]) {
    for (const metric of registry.getMetricsAsArray() as unknown as { name: string; type: string; labelNames: string[] }[]) {
      const labels = [...metric.labelNames, ...TARGET_LABELS];
      const names = metric.type === 'histogram' ? ['_bucket', '_sum', '_count'].map((suffix) => metric.name + suffix) : [metric.name];
      for (const name of names) series.set(name, new Set([...labels, ...(name.endsWith('_bucket') ? ['le'] : [])]));
    }
  }
  return series;
}

/** The selectors and groupings of a PromQL expression: [metric, labels it filters by], and the labels it groups by. */
function readQuery(query: string) {
  // Grafana's interval variables stand for a range.
  const expr = query.replace(/\$__(rate_)?interval\b/g, '5m');
  const tree = parser.parse(expr);
  const selectors: { metric: string; labels: { name: string; value?: string }[] }[] = [];
  const grouping: string[] = [];
  let error: string | undefined;
  tree.iterate({
    enter(node) {
      if (node.type.isError) error ??= `a syntax error at ${node.from}: ${expr.slice(node.from, node.from + 20)}`;
      if (node.name === 'VectorSelector') {
        const metric = node.node.getChild('Identifier');
        const labels = node.node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? [];
        selectors.push({
          metric: metric ? expr.slice(metric.from, metric.to) : '',
          labels: labels.map((matcher) => {
            const name = matcher.getChild('LabelName')!;
            const value = matcher.getChild('StringLiteral');
            const exact = matcher.getChild('MatchOp')?.getChild('EqlSingle');
            return {
              name: expr.slice(name.from, name.to),
              value: exact && value ? JSON.parse(expr.slice(value.from, value.to)) : undefined,
            };
          }),
        });
      }
      if (node.name === 'GroupingLabels') {
        for (const label of node.node.getChildren('LabelName')) grouping.push(expr.slice(label.from, label.to));
      }
    },
  });
  return { selectors, grouping, error };
}

describe('deploy/grafana/resnet-edge.json', () => {
  it('is a dashboard with a Prometheus datasource variable that every panel and query uses', () => {
    expect(dashboard.uid).toBe('resnet-edge');
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource' }));
    const ids = dashboard.panels.map((panel) => panel.id);
    expect(new Set(ids).size, 'panel ids are unique').toBe(ids.length);
    for (const panel of dashboard.panels) {
      expect(panel.datasource?.uid, panel.title).toBe(DATASOURCE);
      expect(panel.targets?.length, `${panel.title}: queries`).toBeGreaterThan(0);
      for (const target of panel.targets!) expect(target.datasource?.uid, panel.title).toBe(DATASOURCE);
    }
  });

  it('queries only metrics and labels the worker and the Node edge export', () => {
    const series = exportedSeries();
    const used = new Set<string>();
    for (const panel of dashboard.panels) {
      for (const { expr } of panel.targets!) {
        const { selectors, grouping, error } = readQuery(expr);
        expect(error, `${panel.title}: ${expr}`).toBeUndefined();
        expect(selectors.length, `${panel.title}: ${expr}`).toBeGreaterThan(0);
        for (const { metric, labels } of selectors) {
          expect([...series.keys()], `${panel.title}: metric ${metric}`).toContain(metric);
          for (const { name, value } of labels) {
            expect([...series.get(metric)!], `${panel.title}: label ${name} of ${metric}`).toContain(name);
            const known = KNOWN_VALUES[name];
            if (known && value !== undefined) expect(known, `${panel.title}: ${name}="${value}"`).toContain(value);
          }
          used.add(metric);
        }
        const labelsHere = new Set(selectors.flatMap(({ metric }) => [...(series.get(metric) ?? [])]));
        for (const label of grouping) expect([...labelsHere], `${panel.title}: grouped by ${label}`).toContain(label);
      }
    }
    // What the issue asks the dashboard to show is there.
    for (const metric of [
      'resnet_worker_jobs_total',
      'resnet_worker_queue_wait_seconds_bucket',
      'resnet_worker_inference_seconds_bucket',
      'resnet_worker_batch_size_sum',
      'resnet_worker_queue_length',
      'resnet_worker_queue_pending',
      'resnet_worker_info',
      'resnet_edge_requests_total',
    ])
      expect([...used], `a panel on ${metric}`).toContain(metric);
  });
});
