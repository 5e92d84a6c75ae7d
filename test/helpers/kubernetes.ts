/**
 * Validates a Kubernetes object against its schema (kubernetes-models: the OpenAPI schemas of
 * Kubernetes itself; @kubernetes-models/keda: KEDA's CRDs). A kind with no schema here is an
 * error too: a manifest must not slip past the check by being of a new kind.
 *
 * @example
 * validateObject(parseYaml(text)); // throws naming the object and what is wrong
 */
import { TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Namespace': Namespace,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'keda.sh/v1alpha1/TriggerAuthentication': TriggerAuthentication,
};

export function validateObject(object: { apiVersion?: string; kind?: string; metadata?: { name?: string } }): void {
  const type = `${object.apiVersion}/${object.kind}`;
  const name = `${object.kind}/${object.metadata?.name}`;
  const Model = MODELS[type];
  if (!Model) throw new Error(`${name}: no schema for ${type} (add its model to test/helpers/kubernetes.ts)`);
  try {
    new Model(object as never).validate();
  } catch (error) {
    throw new Error(`${name}: ${(error as Error).message}`);
  }
}
