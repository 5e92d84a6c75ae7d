/**
 * Build the tfjs LayersModel from the model's files (model/files.ts) and check it fits the wire
 * format: input [null, 224, 224, 3], one output of [null, labels.length]. The tfjs engine runs it;
 * the ONNX engine converts it (engine/onnx/convert.ts).
 *
 * The files are handed to tfjs as in-memory artifacts: tfjs-core alone has no file:// handler.
 * Needs a tfjs backend to hold the weights (see backend.ts).
 *
 * @example
 * const loaded = await loadModel(config); // { model, labels, outputsProbabilities, ... }
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { CHANNELS, IMAGE_SIZE } from '../../../shared/tensor.ts';
import { ModelLoadError, readModelFiles, type ModelFiles, type ModelSettings, type ReadModelOptions } from '../../model/files.ts';
import type { PreprocessMode } from '../../model/preprocess.ts';

export interface LoadedModel {
  model: tfl.LayersModel;
  labels: string[];
  /** Reported in results. */
  name: string;
  preprocess: PreprocessMode;
  /** Directory or URL the model came from. */
  source: string;
  paramCount: number;
  /** Whether the last layer already ends in softmax; if not, the classifier applies one. */
  outputsProbabilities: boolean;
  loadMs: number;
}

/** Read the configured model (downloading the builtin one on first use), build and check it. */
export async function loadModel(config: ModelSettings, options: ReadModelOptions = {}): Promise<LoadedModel> {
  const started = Date.now();
  return buildModel(await readModelFiles(config, options), config, started);
}

/** The LayersModel of files already read. `started`: when reading began, for loadMs. */
export async function buildModel(
  files: ModelFiles,
  config: Pick<ModelSettings, 'preprocess' | 'modelName'>,
  started = Date.now(),
): Promise<LoadedModel> {
  let model: tfl.LayersModel;
  try {
    const artifacts = await tf.io.getModelArtifactsForJSON(files.modelJson as unknown as tf.io.ModelJSON, async (manifest) => [
      manifest.flatMap((group) => group.weights),
      files.shards.map((bytes) => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer),
    ]);
    model = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
  } catch (error) {
    throw new ModelLoadError(`could not load the model from ${files.where}: ${(error as Error).message}`, { cause: error });
  }
  try {
    checkModelShape(model, files.labels, files.where);
    return {
      model,
      labels: files.labels,
      name: config.modelName,
      preprocess: config.preprocess,
      source: files.where,
      paramCount: model.countParams(),
      outputsProbabilities: endsInSoftmax(model),
      loadMs: Date.now() - started,
    };
  } catch (error) {
    model.dispose();
    throw error;
  }
}

export function checkModelShape(model: tfl.LayersModel, labels: string[], where: string): void {
  const expected = [null, IMAGE_SIZE, IMAGE_SIZE, CHANNELS];
  const input = model.inputs.length === 1 ? model.inputs[0]?.shape : undefined;
  if (!input || JSON.stringify(input) !== JSON.stringify(expected)) {
    const got = model.inputs.map((t) => JSON.stringify(t.shape)).join(', ');
    throw new ModelLoadError(
      `${where}: the model must take one input of shape [null,224,224,3] (224x224 RGB, channels last); it takes ${got}`,
    );
  }
  const output = model.outputs.length === 1 ? model.outputs[0]?.shape : undefined;
  if (output?.length !== 2) {
    const got = model.outputs.map((t) => JSON.stringify(t.shape)).join(', ');
    throw new ModelLoadError(`${where}: the model must have one output of shape [null, classes]; it has ${got}`);
  }
  if (output[1] !== labels.length) {
    throw new ModelLoadError(`${where}: the model outputs ${output[1]} classes but there are ${labels.length} labels`);
  }
}

function endsInSoftmax(model: tfl.LayersModel): boolean {
  const last = model.layers.at(-1);
  if (!last) return false;
  if (last.getClassName() === 'Softmax') return true;
  return (last.getConfig() as { activation?: unknown }).activation === 'softmax';
}
