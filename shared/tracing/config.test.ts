import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { parseEnv } from '../config.ts';
import { TRACING_VARS, tracingSettings } from './config.ts';

const Env = z.object({ ...TRACING_VARS }).transform((env) => tracingSettings(env, 'resnet-test'));
const parse = (env: Record<string, string>) => parseEnv(Env, env);

describe('the tracing settings (OTEL_*)', () => {
  it('are off without an endpoint, whatever else is set', () => {
    expect(parse({})).toBeUndefined();
    expect(parse({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' })).toBeUndefined();
  });

  it('post to <endpoint>/v1/traces, or to the traces endpoint as given', () => {
    expect(parse({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' })).toEqual({
      url: 'http://collector:4318/v1/traces',
      headers: {},
      serviceName: 'resnet-test',
      sampler: 'parentbased_always_on',
      ratio: 1,
    });
    expect(
      parse({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://vendor.example/otlp/traces',
      })?.url,
    ).toBe('https://vendor.example/otlp/traces');
  });

  it('take headers as URL-encoded key=value pairs, a service name and a sampler', () => {
    const settings = parse({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'https://vendor.example',
      OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=abc%3D%3D, x-team = edge',
      OTEL_SERVICE_NAME: 'edge-eu',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
    });
    expect(settings).toMatchObject({ headers: { 'x-api-key': 'abc==', 'x-team': 'edge' }, serviceName: 'edge-eu', ratio: 0.25 });
  });

  it('name each bad one, and never show the headers (they hold keys)', () => {
    expect(() => parse({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })).toThrow(
      /OTEL_EXPORTER_OTLP_ENDPOINT: expected a URL starting with http:\/\/ or https:\/\/ \(got "collector:4318"\)/,
    );
    expect(() => parse({ OTEL_TRACES_SAMPLER: 'sometimes' })).toThrow(/OTEL_TRACES_SAMPLER: expected one of parentbased_always_on/);
    expect(() => parse({ OTEL_TRACES_SAMPLER_ARG: '2' })).toThrow(/OTEL_TRACES_SAMPLER_ARG: expected a number from 0 to 1/);
    for (const headers of ['api-key', 'api-key=%E0%A4%A', 'bad key=1']) {
      expect(() => parse({ OTEL_EXPORTER_OTLP_HEADERS: headers })).toThrow(
        new RegExp(
          `OTEL_EXPORTER_OTLP_HEADERS: expected comma-separated key=value pairs .*\\(got ${headers.length} characters, not shown\\)`,
        ),
      );
    }
  });
});
