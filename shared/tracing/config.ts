/**
 * The tracing settings both tiers read: OpenTelemetry's own variable names (a subset of the OTel
 * SDK configuration spec), so a collector set up for other services works here unchanged. Tracing
 * is on only when an OTLP endpoint is set.
 *
 * @example
 * const Env = z.object({ ...TRACING_VARS }).transform((env) => ({ tracing: tracingSettings(env, 'resnet-edge') }));
 */
import { z } from 'zod';
import { urlVar } from '../config.ts';

export const SAMPLERS = [
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
  'always_on',
  'always_off',
  'traceidratio',
] as const;
export type SamplerName = (typeof SAMPLERS)[number];

/** `key=value` pairs, comma-separated, values URL-encoded (the W3C Baggage format the OTel spec uses). */
const HEADER_PAIR = /^\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+\s*=\s*[^,]*$/;

export const TRACING_VARS = {
  // OTLP over HTTP (JSON): the collector's base URL; spans go to <it>/v1/traces. Unset: no tracing.
  OTEL_EXPORTER_OTLP_ENDPOINT: urlVar(['http:', 'https:']).optional(),
  // The full traces URL, when it is not <OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces.
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: urlVar(['http:', 'https:']).optional(),
  // Sent with every export, e.g. a vendor's API key: a secret (never logged).
  OTEL_EXPORTER_OTLP_HEADERS: z
    .string()
    .refine((value) => value.split(',').every((pair) => HEADER_PAIR.test(pair) && decodes(pair)), {
      error: 'expected comma-separated key=value pairs (values URL-encoded)',
    })
    .optional(),
  OTEL_SERVICE_NAME: z.string().min(1).max(256).optional(),
  OTEL_TRACES_SAMPLER: z.enum(SAMPLERS, { error: `expected one of ${SAMPLERS.join(', ')}` }).default('parentbased_always_on'),
  // The ratio of the *traceidratio samplers, 0 to 1.
  OTEL_TRACES_SAMPLER_ARG: z.coerce
    .number({ error: 'expected a number from 0 to 1' })
    .min(0, { error: 'expected a number from 0 to 1' })
    .max(1, { error: 'expected a number from 0 to 1' })
    .default(1),
};

type TracingEnv = z.infer<z.ZodObject<typeof TRACING_VARS>>;

export interface TracingSettings {
  /** Where spans are POSTed (OTLP/HTTP JSON). */
  url: string;
  headers: Record<string, string>;
  /** The `service.name` of this tier's spans. */
  serviceName: string;
  sampler: SamplerName;
  /** The traceidratio samplers' ratio. */
  ratio: number;
}

/** The settings of `env`, or undefined when no endpoint is set (tracing off). */
export function tracingSettings(env: TracingEnv, defaultServiceName: string): TracingSettings | undefined {
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const url = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? (base && `${base.replace(/\/+$/, '')}/v1/traces`);
  if (!url) return undefined;
  return {
    url,
    headers: parseHeaders(env.OTEL_EXPORTER_OTLP_HEADERS),
    serviceName: env.OTEL_SERVICE_NAME ?? defaultServiceName,
    sampler: env.OTEL_TRACES_SAMPLER,
    ratio: env.OTEL_TRACES_SAMPLER_ARG,
  };
}

function decodes(text: string): boolean {
  try {
    decodeURIComponent(text);
    return true;
  } catch {
    return false;
  }
}

function parseHeaders(value: string | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const pair of value?.split(',') ?? []) {
    const at = pair.indexOf('=');
    headers[pair.slice(0, at).trim()] = decodeURIComponent(pair.slice(at + 1).trim());
  }
  return headers;
}
