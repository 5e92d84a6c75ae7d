/**
 * A tfjs layers model (Keras, as tfjs-layers loaded it) as an ONNX graph that takes the wire
 * tensor as it is and ends in probabilities:
 *
 *   image uint8 [batch, 224, 224, 3] (RGB, NHWC) -> Cast -> PREPROCESS (caffe / tf / torch / none)
 *   -> the model's layers (layers.ts) -> softmax if the model ends in logits -> probabilities [batch, classes]
 *
 * so the engine runs no per-pixel JavaScript. The walk follows tfjs' own graph (symbolic tensors
 * from the model's outputs back to its input), so branches (ResNet's Add), shared layers and
 * models nested as layers convert like a chain does. A layer class or option without a converter
 * throws ConversionError naming the layer and its class.
 *
 * The preprocessing nodes do what engine/tfjs/preprocess.ts does, op for op in float32, so both
 * engines feed the first layer the same numbers.
 *
 * @example
 * const loaded = await loadModel(config);         // engine/tfjs/load.ts (any tfjs backend)
 * const { bytes } = convertLayersModel(loaded);     // an ONNX ModelProto
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { CAFFE_MEAN_BGR, TORCH_MEAN_RGB, TORCH_STD_RGB, type PreprocessMode } from '../../model/preprocess.ts';
import { CHANNELS, IMAGE_SIZE } from '../../../shared/tensor.ts';
import { selectBackend } from '../tfjs/backend.ts';
import type { LoadedModel } from '../tfjs/load.ts';
import { CONVERTER_VERSION, INPUT_NAME, int, OnnxGraph, OUTPUT_NAME } from './graph.ts';
import { CONVERTERS, ConversionError, LayerContext, SUPPORTED_LAYERS, type LayerWeight, type Value } from './layers.ts';

export interface ConvertedModel {
  bytes: Uint8Array;
  /** ONNX nodes in the graph. */
  nodes: number;
  classes: number;
  convertMs: number;
}

/** Symbolic tensors of one graph (the model, or a model nested in it) already converted. */
interface Scope {
  prefix: string;
  bound: Map<number, Value>;
  nodes: Map<number, Value>;
}

export interface ConvertOptions {
  /**
   * 'wire' (the worker's): uint8 RGB, PREPROCESS inside the graph. 'float32': the model's own
   * input, already preprocessed (the seed protocol's tensors, bench/seed/).
   */
  input?: 'wire' | 'float32';
  metadata?: Record<string, string>;
}

export function convertLayersModel(loaded: LoadedModel, options: ConvertOptions = {}): ConvertedModel {
  const started = performance.now();
  const g = new OnnxGraph();
  const ctx = new LayerContext(g);
  const wire = (options.input ?? 'wire') === 'wire';
  const input = g.input(INPUT_NAME, wire ? 'uint8' : 'float', ['batch', IMAGE_SIZE, IMAGE_SIZE, CHANNELS]);
  const output = g.unique(OUTPUT_NAME);
  const model = loaded.model;
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new ConversionError(`the model has ${model.inputs.length} inputs and ${model.outputs.length} outputs (one of each is supported)`);
  }

  const image: Value = {
    name: wire ? preprocessNodes(g, input, loaded.preprocess) : input,
    layout: 'keras',
    shape: [null, IMAGE_SIZE, IMAGE_SIZE, CHANNELS],
  };
  const scope: Scope = { prefix: '', bound: new Map([[model.inputs[0]!.id, image]]), nodes: new Map() };
  let y = valueFor(ctx, model.outputs[0]!, scope);
  if (y.shape.length !== 2) throw new ConversionError(`the model's output has shape ${JSON.stringify(y.shape)}; expected [null, classes]`);
  if (!loaded.outputsProbabilities) y = { ...y, name: g.op('Softmax', [ctx.keras(y)], { axis: int(-1) }, 'softmax') };
  g.identity(ctx.keras(y), output);
  const classes = Number(y.shape[1]);
  g.output(output, 'float', ['batch', classes]);

  const bytes = g.toBytes({
    producer: 'resnet-edge',
    producerVersion: String(CONVERTER_VERSION),
    graphName: loaded.name,
    docString: `${loaded.name} from ${loaded.source}: tfjs layers model converted by gpu-worker/engine/onnx/convert.ts (${wire ? `input uint8 RGB NHWC, PREPROCESS=${loaded.preprocess} inside` : 'input float32 NHWC, preprocessed'})`,
    metadata: { preprocess: loaded.preprocess, ...options.metadata },
  });
  return { bytes, nodes: g.nodeCount, classes, convertMs: performance.now() - started };
}

/** uint8 NHWC RGB -> float32, normalised as the model was trained (see model/preprocess.ts). */
function preprocessNodes(g: OnnxGraph, input: string, mode: PreprocessMode): string {
  const x = g.op('Cast', [input], { to: int(1 /* FLOAT */) }, 'image/float');
  const perChannel = (name: string, values: readonly number[]) => g.floats(`preprocess/${name}`, [CHANNELS], Float32Array.from(values));
  const scalar = (name: string, value: number) => g.floats(`preprocess/${name}`, [], Float32Array.of(value));
  switch (mode) {
    case 'caffe': {
      const bgr = g.op('Gather', [x, g.int64s('preprocess/bgr', [2, 1, 0])], { axis: int(3) }, 'image/bgr');
      return g.op('Sub', [bgr, perChannel('mean_bgr', CAFFE_MEAN_BGR)], {}, 'image/caffe');
    }
    case 'tf':
      return g.op('Sub', [g.op('Div', [x, scalar('half_range', 127.5)], {}, 'image/scaled'), scalar('one', 1)], {}, 'image/tf');
    case 'torch': {
      const unit = g.op('Div', [x, scalar('range', 255)], {}, 'image/unit');
      const centred = g.op('Sub', [unit, perChannel('mean_rgb', TORCH_MEAN_RGB)], {}, 'image/centred');
      return g.op('Div', [centred, perChannel('std_rgb', TORCH_STD_RGB)], {}, 'image/torch');
    }
    case 'none':
      return x;
  }
}

function valueFor(ctx: LayerContext, tensor: tfl.SymbolicTensor, scope: Scope): Value {
  const bound = scope.bound.get(tensor.id);
  if (bound) return bound;
  const layer = tensor.sourceLayer;
  const node = layer.inboundNodes[tensor.nodeIndex];
  if (!node || layer.getClassName() === 'InputLayer') {
    throw new ConversionError(`layer "${layer.name}" (${layer.getClassName()}): an input the model is not fed from`);
  }
  let outputs = scope.nodes.get(node.id);
  if (!outputs) {
    outputs = convertNode(
      ctx,
      layer,
      node.inputTensors.map((t) => valueFor(ctx, t, scope)),
      node.outputTensors,
      scope,
    );
    scope.nodes.set(node.id, outputs);
  }
  if (tensor.tensorIndex !== 0) throw new ConversionError(`layer "${layer.name}" (${layer.getClassName()}): a layer with several outputs`);
  return outputs;
}

function convertNode(ctx: LayerContext, layer: tfl.layers.Layer, inputs: Value[], outputs: tfl.SymbolicTensor[], scope: Scope): Value {
  const className = layer.getClassName();
  if (layer instanceof tfl.LayersModel) {
    // A model used as a layer (a pretrained base inside a Sequential): its graph, fed these inputs.
    if (inputs.length !== layer.inputs.length || layer.outputs.length !== 1) {
      throw new ConversionError(
        `layer "${layer.name}" (${className}): a nested model with ${layer.inputs.length} inputs and ${layer.outputs.length} outputs`,
      );
    }
    const inner: Scope = {
      prefix: `${scope.prefix}${layer.name}/`,
      bound: new Map(layer.inputs.map((t, i) => [t.id, inputs[i]!])),
      nodes: new Map(),
    };
    return valueFor(ctx, layer.outputs[0]!, inner);
  }
  const converter = CONVERTERS[className];
  if (!converter) {
    throw new ConversionError(
      `layer "${layer.name}" (${className}): no ONNX conversion for ${className} (supported: ${SUPPORTED_LAYERS.join(', ')})`,
    );
  }
  const byName = new Map(layer.weights.map((w) => [w.originalName.split('/').at(-1)!.replace(/:\d+$/, ''), w]));
  const weights = (name: string): LayerWeight | undefined => {
    const variable = byName.get(name);
    if (!variable) return undefined;
    const tensor = variable.read();
    if (tensor.dtype !== 'float32')
      throw new ConversionError(`layer "${layer.name}" (${className}): weight ${name} is ${tensor.dtype}, not float32`);
    return { data: tensor.dataSync() as Float32Array, shape: tensor.shape };
  };
  const call = {
    layer,
    className,
    config: layer.getConfig() as Record<string, unknown>,
    inputs,
    outputShape: outputs[0]!.shape,
    name: `${scope.prefix}${layer.name}`,
  };
  try {
    return converter(ctx, call, weights);
  } catch (error) {
    if (error instanceof ConversionError && !error.message.startsWith('layer "')) {
      throw new ConversionError(`layer "${layer.name}" (${className}): ${error.message}`, { cause: error });
    }
    throw error;
  }
}

/** tfjs-layers needs some backend to hold the weights while converting: the process's, or cpu. */
export async function ensureTfjsBackend(): Promise<void> {
  if (tf.engine().backendName) return;
  await selectBackend('cpu');
  // The cpu backend greets its first use with advice to install tfjs-node: not what converting needs.
  (tf.backend() as { firstUse?: boolean }).firstUse = false;
}
