/**
 * Keras layers (as tfjs-layers deserialised them) as ONNX nodes: one converter per layer class,
 * each given the layer's config, its weights and its input values, returning its output value.
 *
 * Layout: Keras keeps images channels-last (NHWC); ONNX's Conv, pooling and BatchNormalization are
 * channels-first (NCHW). A value is held in whichever layout its producer made, and a consumer asks
 * for the one it needs (`nchw()` / `keras()`), which adds one Transpose the first time a value is
 * wanted the other way. Convolutions, pooling and normalisation run NCHW; Flatten, Dense on images,
 * Reshape and Permute see the Keras layout, so their element order (and Dense's weights) are the
 * Keras ones. Axis arguments (Softmax, Concatenate) are mapped to the layout the value is in.
 *
 * Semantics are tfjs-layers' (what the tfjs engine computes), e.g. 'same' padding puts the odd
 * pixel at the end, as TensorFlow does; AveragePooling leaves padding out of the average.
 *
 * Longer than the other modules on purpose: it is a table of converters, one short entry per layer
 * class, read one entry at a time; split, the shared layout helpers would have to travel with each.
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import { float, int, ints, type OnnxGraph } from './graph.ts';

/** A converted tensor: its ONNX name, the layout it is held in, and its Keras (NHWC) shape. */
export interface Value {
  name: string;
  layout: 'nchw' | 'keras';
  shape: (number | null)[];
}

/** A layer class, or an option of a supported one, that has no ONNX conversion here. */
export class ConversionError extends Error {
  override name = 'ConversionError';
}

export interface LayerWeight {
  data: Float32Array;
  shape: number[];
}

export interface LayerCall {
  layer: tfl.layers.Layer;
  className: string;
  config: Record<string, unknown>;
  inputs: Value[];
  /** Keras shape of the (first) output, as tfjs inferred it. */
  outputShape: (number | null)[];
  /** Base for node and value names (the layer name, unique per call). */
  name: string;
}

/** What converters share: the graph, weights, layout changes. */
export class LayerContext {
  private readonly transposed = new Map<string, string>();

  constructor(readonly graph: OnnxGraph) {}

  /** The value channels-first (rank 4 only). */
  nchw(value: Value): string {
    if (value.layout === 'nchw') return value.name;
    if (value.shape.length !== 4) throw new ConversionError(`expected an image tensor (rank 4), got shape ${JSON.stringify(value.shape)}`);
    return this.transpose(value.name, [0, 3, 1, 2], 'nchw');
  }

  /** The value in the layout Keras sees (NHWC for images). */
  keras(value: Value): string {
    if (value.layout === 'keras') return value.name;
    return this.transpose(value.name, [0, 2, 3, 1], 'nhwc');
  }

  private transpose(name: string, perm: number[], suffix: string): string {
    const key = `${name}|${perm}`;
    let out = this.transposed.get(key);
    if (!out) {
      out = this.graph.op('Transpose', [name], { perm: ints(perm) }, `${name}/${suffix}`);
      this.transposed.set(key, out);
    }
    return out;
  }
}

type Converter = (ctx: LayerContext, call: LayerCall, weights: (name: string) => LayerWeight | undefined) => Value;

/** Unusable weights or options throw this, naming the layer and its class. */
const unsupported = (call: LayerCall, what: string): never => {
  throw new ConversionError(`layer "${call.layer.name}" (${call.className}): ${what}`);
};

const required = (call: LayerCall, weights: (name: string) => LayerWeight | undefined, name: string): LayerWeight =>
  weights(name) ?? unsupported(call, `has no weight "${name}"`);

/** The one input of a single-input layer. */
const only = (call: LayerCall): Value =>
  call.inputs.length === 1 ? call.inputs[0]! : unsupported(call, `expected 1 input, got ${call.inputs.length}`);

const pair = (value: unknown): [number, number] =>
  Array.isArray(value) ? [Number(value[0]), Number(value[1] ?? value[0])] : [Number(value), Number(value)];

/** A [[top, bottom], [left, right]] config (ZeroPadding2D's padding, Cropping2D's cropping). */
function sides(value: unknown): { top: number; bottom: number; left: number; right: number } {
  const [vertical, horizontal] = Array.isArray(value) ? value : [value, value];
  const [top, bottom] = pair(vertical);
  const [left, right] = pair(horizontal);
  return { top, bottom, left, right };
}

function channelsLast(call: LayerCall): void {
  const format = call.config.dataFormat;
  if (format !== undefined && format !== 'channelsLast') unsupported(call, `dataFormat ${String(format)} (only channelsLast)`);
}

/**
 * ONNX pads [top, left, bottom, right] for a window over a Keras NHWC input: 'valid' none,
 * 'same' TensorFlow's rule (output ceil(in / stride), the odd pixel of padding at the end).
 */
function windowPads(
  call: LayerCall,
  input: Value,
  kernel: [number, number],
  strides: [number, number],
  dilations: [number, number] = [1, 1],
): number[] {
  const padding = call.config.padding;
  if (padding === 'valid') return [0, 0, 0, 0];
  if (padding !== 'same') return unsupported(call, `padding ${String(padding)}`);
  const before: number[] = [];
  const after: number[] = [];
  for (const axis of [0, 1]) {
    const size = input.shape[axis + 1];
    if (typeof size !== 'number') return unsupported(call, "'same' padding needs a known image size");
    const out = Math.ceil(size / strides[axis]!);
    const span = (kernel[axis]! - 1) * dilations[axis]! + 1;
    const total = Math.max((out - 1) * strides[axis]! + span - size, 0);
    before.push(Math.floor(total / 2));
    after.push(total - Math.floor(total / 2));
  }
  return [...before, ...after];
}

/** Keras' activation names (tfjs spelling) as ONNX nodes on `x`, in whatever layout it is. */
export function activation(ctx: LayerContext, call: LayerCall, which: unknown, x: Value, name: string): Value {
  const g = ctx.graph;
  const same = (out: string): Value => ({ ...x, name: out });
  const scalar = (label: string, v: number) => g.floats(`${name}/${label}`, [], Float32Array.of(v));
  switch (which ?? 'linear') {
    case 'linear':
      return x;
    case 'relu':
      return same(g.op('Relu', [x.name], {}, name));
    case 'relu6':
      return same(g.op('Clip', [x.name, scalar('min', 0), scalar('max', 6)], {}, name));
    case 'sigmoid':
      return same(g.op('Sigmoid', [x.name], {}, name));
    case 'tanh':
      return same(g.op('Tanh', [x.name], {}, name));
    case 'softmax':
      return same(g.op('Softmax', [x.name], { axis: int(layoutAxis(x, -1)) }, name));
    case 'logSoftmax':
      return same(g.op('LogSoftmax', [x.name], { axis: int(layoutAxis(x, -1)) }, name));
    case 'elu':
      return same(g.op('Elu', [x.name], { alpha: float(1) }, name));
    case 'selu':
      return same(g.op('Selu', [x.name], {}, name));
    case 'softplus':
      return same(g.op('Softplus', [x.name], {}, name));
    case 'softsign':
      return same(g.op('Softsign', [x.name], {}, name));
    case 'hardSigmoid':
      return same(g.op('HardSigmoid', [x.name], { alpha: float(0.2), beta: float(0.5) }, name));
    case 'swish':
      return same(g.op('Mul', [x.name, g.op('Sigmoid', [x.name], {}, `${name}/sigmoid`)], {}, name));
    case 'mish':
      return same(g.op('Mul', [x.name, g.op('Tanh', [g.op('Softplus', [x.name], {}, `${name}/softplus`)], {}, `${name}/tanh`)], {}, name));
    default:
      return unsupported(call, `activation ${String(which)}`);
  }
}

/** A Keras axis (negative counts from the end) in the layout `x` is held in. */
function layoutAxis(x: Value, kerasAxis: number): number {
  const rank = x.shape.length;
  const axis = kerasAxis < 0 ? kerasAxis + rank : kerasAxis;
  if (x.layout === 'keras' || axis === 0) return axis;
  // NHWC axis -> NCHW axis: C 3 -> 1, H 1 -> 2, W 2 -> 3.
  return axis === 3 ? 1 : axis + 1;
}

/** Inputs of a merge layer, all in one layout: channels-first if any already is. */
function mergeInputs(ctx: LayerContext, call: LayerCall): { names: string[]; layout: Value['layout'] } {
  if (call.inputs.length < 2) unsupported(call, `expected 2 or more inputs, got ${call.inputs.length}`);
  const ranks = new Set(call.inputs.map((v) => v.shape.length));
  if (ranks.size !== 1) unsupported(call, `inputs of different ranks (${[...ranks].join(', ')})`);
  const layout = call.inputs.some((v) => v.layout === 'nchw') ? 'nchw' : 'keras';
  return { names: call.inputs.map((v) => (layout === 'nchw' ? ctx.nchw(v) : ctx.keras(v))), layout };
}

/**
 * A merge layer as one ONNX op over all inputs (`variadic`: Sum, Mean, Max, Min) or a chain of
 * two-input ops (Mul); `pairwise` is used for exactly two inputs (Add: what ONNX Runtime fuses
 * into the Conv before it).
 */
function merge(variadic: string | undefined, pairwise: string): Converter {
  return (ctx, call) => {
    const { names, layout } = mergeInputs(ctx, call);
    let name: string;
    if (names.length === 2 || !variadic) {
      name = names.reduce((a, b, i) => ctx.graph.op(pairwise, [a, b], {}, i === names.length - 1 ? call.name : `${call.name}/${i}`));
    } else {
      name = ctx.graph.op(variadic, names, {}, call.name);
    }
    return { name, layout, shape: call.outputShape };
  };
}

function conv2d(ctx: LayerContext, call: LayerCall, weights: (name: string) => LayerWeight | undefined): Value {
  channelsLast(call);
  const x = only(call);
  const kernel = required(call, weights, 'kernel'); // [kh, kw, in, out]
  const [kh, kw, inC, outC] = kernel.shape as [number, number, number, number];
  const strides = pair(call.config.strides);
  const dilations = pair(call.config.dilationRate);
  const w = ctx.graph.floats(`${call.name}/kernel`, [outC, inC, kh, kw], hwioToOihw(kernel.data, kh, kw, inC, outC));
  const inputs = [ctx.nchw(x), w];
  const bias = call.config.useBias === false ? undefined : required(call, weights, 'bias');
  if (bias) inputs.push(ctx.graph.floats(`${call.name}/bias`, [outC], bias.data));
  const y = ctx.graph.op(
    'Conv',
    inputs,
    {
      kernel_shape: ints([kh, kw]),
      strides: ints(strides),
      dilations: ints(dilations),
      pads: ints(windowPads(call, x, [kh, kw], strides, dilations)),
      group: int(1),
    },
    call.config.activation && call.config.activation !== 'linear' ? `${call.name}/conv` : call.name,
  );
  return activation(ctx, call, call.config.activation, { name: y, layout: 'nchw', shape: call.outputShape }, call.name);
}

/** Depthwise convolution as a grouped Conv: one group per input channel, depthMultiplier outputs each. */
function depthwise(ctx: LayerContext, call: LayerCall, x: Value, kernel: LayerWeight, bias: LayerWeight | undefined, name: string): string {
  const [kh, kw, channels, multiplier] = kernel.shape as [number, number, number, number];
  const strides = pair(call.config.strides);
  const dilations = pair(call.config.dilationRate);
  // tfjs' output channel c * multiplier + m comes from input channel c.
  const w = new Float32Array(kernel.data.length);
  for (let h = 0; h < kh; h++)
    for (let v = 0; v < kw; v++)
      for (let c = 0; c < channels; c++)
        for (let m = 0; m < multiplier; m++)
          w[((c * multiplier + m) * kh + h) * kw + v] = kernel.data[((h * kw + v) * channels + c) * multiplier + m]!;
  const inputs = [ctx.nchw(x), ctx.graph.floats(`${name}/depthwise_kernel`, [channels * multiplier, 1, kh, kw], w)];
  if (bias) inputs.push(ctx.graph.floats(`${name}/bias`, [channels * multiplier], bias.data));
  return ctx.graph.op(
    'Conv',
    inputs,
    {
      kernel_shape: ints([kh, kw]),
      strides: ints(strides),
      dilations: ints(dilations),
      pads: ints(windowPads(call, x, [kh, kw], strides, dilations)),
      group: int(channels),
    },
    name,
  );
}

function hwioToOihw(data: Float32Array, kh: number, kw: number, inC: number, outC: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let h = 0; h < kh; h++)
    for (let w = 0; w < kw; w++)
      for (let i = 0; i < inC; i++) {
        const from = ((h * kw + w) * inC + i) * outC;
        for (let o = 0; o < outC; o++) out[((o * inC + i) * kh + h) * kw + w] = data[from + o]!;
      }
  return out;
}

function pool(opType: 'MaxPool' | 'AveragePool'): Converter {
  return (ctx, call) => {
    channelsLast(call);
    const x = only(call);
    const kernel = pair(call.config.poolSize);
    const strides = call.config.strides == null ? kernel : pair(call.config.strides);
    const y = ctx.graph.op(
      opType,
      [ctx.nchw(x)],
      { kernel_shape: ints(kernel), strides: ints(strides), pads: ints(windowPads(call, x, kernel, strides)) },
      call.name,
    );
    return { name: y, layout: 'nchw', shape: call.outputShape };
  };
}

function globalPool(opType: 'GlobalAveragePool' | 'GlobalMaxPool'): Converter {
  return (ctx, call) => {
    channelsLast(call);
    const pooled = ctx.graph.op(opType, [ctx.nchw(only(call))], {}, `${call.name}/pool`); // [N, C, 1, 1]
    return { name: ctx.graph.op('Flatten', [pooled], { axis: int(1) }, call.name), layout: 'keras', shape: call.outputShape };
  };
}

const identity: Converter = (_ctx, call) => only(call);

/** Converters by tfjs-layers class name. */
export const CONVERTERS: Record<string, Converter> = {
  Conv2D: conv2d,
  DepthwiseConv2D(ctx, call, weights) {
    channelsLast(call);
    const bias = call.config.useBias === false ? undefined : required(call, weights, 'bias');
    const y = depthwise(
      ctx,
      call,
      only(call),
      required(call, weights, 'depthwise_kernel'),
      bias,
      call.config.activation !== 'linear' ? `${call.name}/depthwise` : call.name,
    );
    return activation(ctx, call, call.config.activation, { name: y, layout: 'nchw', shape: call.outputShape }, call.name);
  },
  SeparableConv2D(ctx, call, weights) {
    channelsLast(call);
    const x = only(call);
    const depth = depthwise(ctx, call, x, required(call, weights, 'depthwise_kernel'), undefined, `${call.name}/depthwise`);
    const pointwise = required(call, weights, 'pointwise_kernel'); // [1, 1, in, out]
    const [, , inC, outC] = pointwise.shape as [number, number, number, number];
    const inputs = [
      depth,
      ctx.graph.floats(`${call.name}/pointwise_kernel`, [outC, inC, 1, 1], hwioToOihw(pointwise.data, 1, 1, inC, outC)),
    ];
    if (call.config.useBias !== false) inputs.push(ctx.graph.floats(`${call.name}/bias`, [outC], required(call, weights, 'bias').data));
    const y = ctx.graph.op(
      'Conv',
      inputs,
      { kernel_shape: ints([1, 1]) },
      call.config.activation !== 'linear' ? `${call.name}/pointwise` : call.name,
    );
    return activation(ctx, call, call.config.activation, { name: y, layout: 'nchw', shape: call.outputShape }, call.name);
  },
  BatchNormalization(ctx, call, weights) {
    const x = only(call);
    const rank = x.shape.length;
    const axis = Number(call.config.axis ?? -1);
    if (axis !== -1 && axis !== rank - 1) unsupported(call, `axis ${axis} (only the last, channels, axis)`);
    if (rank !== 4 && rank !== 2) unsupported(call, `an input of rank ${rank} (only images or vectors)`);
    const mean = required(call, weights, 'moving_mean');
    const channels = mean.data.length;
    const param = (weight: string, fallback: number) =>
      ctx.graph.floats(`${call.name}/${weight}`, [channels], weights(weight)?.data ?? new Float32Array(channels).fill(fallback));
    const inputs = [
      rank === 4 ? ctx.nchw(x) : ctx.keras(x),
      param('gamma', 1), // scale: false keeps gamma at 1,
      param('beta', 0), // center: false beta at 0, as tfjs does.
      ctx.graph.floats(`${call.name}/moving_mean`, [channels], mean.data),
      ctx.graph.floats(`${call.name}/moving_variance`, [channels], required(call, weights, 'moving_variance').data),
    ];
    const y = ctx.graph.op('BatchNormalization', inputs, { epsilon: float(Number(call.config.epsilon ?? 1e-3)) }, call.name);
    return { name: y, layout: rank === 4 ? 'nchw' : 'keras', shape: call.outputShape };
  },
  Activation: (ctx, call) => activation(ctx, call, call.config.activation, only(call), call.name),
  ReLU(ctx, call) {
    const x = only(call);
    const max = call.config.maxValue;
    if (max == null) return { ...x, name: ctx.graph.op('Relu', [x.name], {}, call.name) };
    const bound = (label: string, v: number) => ctx.graph.floats(`${call.name}/${label}`, [], Float32Array.of(v));
    return { ...x, name: ctx.graph.op('Clip', [x.name, bound('min', 0), bound('max', Number(max))], {}, call.name) };
  },
  LeakyReLU(ctx, call) {
    const x = only(call);
    return { ...x, name: ctx.graph.op('LeakyRelu', [x.name], { alpha: float(Number(call.config.alpha ?? 0.3)) }, call.name) };
  },
  ELU(ctx, call) {
    const x = only(call);
    return { ...x, name: ctx.graph.op('Elu', [x.name], { alpha: float(Number(call.config.alpha ?? 1)) }, call.name) };
  },
  ThresholdedReLU(ctx, call) {
    const x = only(call);
    return { ...x, name: ctx.graph.op('ThresholdedRelu', [x.name], { alpha: float(Number(call.config.theta ?? 1)) }, call.name) };
  },
  Softmax(ctx, call) {
    const x = only(call);
    // tfjs' default is 1 (it always writes its axis into the config anyway).
    const axis = Array.isArray(call.config.axis) ? call.config.axis : [call.config.axis ?? 1];
    if (axis.length !== 1) unsupported(call, `softmax over several axes (${JSON.stringify(axis)})`);
    return { ...x, name: ctx.graph.op('Softmax', [x.name], { axis: int(layoutAxis(x, Number(axis[0]))) }, call.name) };
  },
  ZeroPadding2D(ctx, call) {
    channelsLast(call);
    const { top, bottom, left, right } = sides(call.config.padding);
    const pads = ctx.graph.int64s(`${call.name}/pads`, [0, 0, top, left, 0, 0, bottom, right]);
    return { name: ctx.graph.op('Pad', [ctx.nchw(only(call)), pads], {}, call.name), layout: 'nchw', shape: call.outputShape };
  },
  Cropping2D(ctx, call) {
    channelsLast(call);
    const x = only(call);
    const { top, bottom, left, right } = sides(call.config.cropping);
    const [height, width] = [x.shape[1], x.shape[2]];
    if (typeof height !== 'number' || typeof width !== 'number') unsupported(call, 'needs a known image size');
    const starts = ctx.graph.int64s(`${call.name}/starts`, [top, left]);
    const ends = ctx.graph.int64s(`${call.name}/ends`, [(height as number) - bottom, (width as number) - right]);
    const axes = ctx.graph.int64s(`${call.name}/axes`, [2, 3]);
    return { name: ctx.graph.op('Slice', [ctx.nchw(x), starts, ends, axes], {}, call.name), layout: 'nchw', shape: call.outputShape };
  },
  MaxPooling2D: pool('MaxPool'),
  AveragePooling2D: pool('AveragePool'),
  GlobalAveragePooling2D: globalPool('GlobalAveragePool'),
  GlobalMaxPooling2D: globalPool('GlobalMaxPool'),
  Flatten(ctx, call) {
    channelsLast(call);
    return {
      name: ctx.graph.op('Flatten', [ctx.keras(only(call))], { axis: int(1) }, call.name),
      layout: 'keras',
      shape: call.outputShape,
    };
  },
  Reshape(ctx, call) {
    const target = (call.config.targetShape as number[]).map(Number);
    const shape = ctx.graph.int64s(`${call.name}/shape`, [0, ...target]); // 0: keep the batch dimension
    return { name: ctx.graph.op('Reshape', [ctx.keras(only(call)), shape], {}, call.name), layout: 'keras', shape: call.outputShape };
  },
  Permute(ctx, call) {
    const dims = (call.config.dims as number[]).map(Number);
    return {
      name: ctx.graph.op('Transpose', [ctx.keras(only(call))], { perm: ints([0, ...dims]) }, call.name),
      layout: 'keras',
      shape: call.outputShape,
    };
  },
  Dense(ctx, call, weights) {
    const x = only(call);
    const kernel = required(call, weights, 'kernel'); // [in, units]
    const [inputs, units] = kernel.shape as [number, number];
    const w = ctx.graph.floats(`${call.name}/kernel`, [inputs, units], kernel.data);
    const bias =
      call.config.useBias === false ? undefined : ctx.graph.floats(`${call.name}/bias`, [units], required(call, weights, 'bias').data);
    const named = call.config.activation && call.config.activation !== 'linear' ? `${call.name}/dense` : call.name;
    let y: string;
    if (x.shape.length === 2) {
      y = ctx.graph.op('Gemm', bias ? [x.name, w, bias] : [x.name, w], {}, named);
    } else {
      // Dense on a rank > 2 input applies to the last Keras axis.
      const product = ctx.graph.op('MatMul', [ctx.keras(x), w], {}, bias ? `${call.name}/matmul` : named);
      y = bias ? ctx.graph.op('Add', [product, bias], {}, named) : product;
    }
    return activation(ctx, call, call.config.activation, { name: y, layout: 'keras', shape: call.outputShape }, call.name);
  },
  Add: merge('Sum', 'Add'),
  Average: merge('Mean', 'Mean'),
  Maximum: merge('Max', 'Max'),
  Minimum: merge('Min', 'Min'),
  Multiply: merge(undefined, 'Mul'),
  Concatenate(ctx, call) {
    const { names, layout } = mergeInputs(ctx, call);
    const probe: Value = { name: '', layout, shape: call.outputShape };
    return {
      name: ctx.graph.op('Concat', names, { axis: int(layoutAxis(probe, Number(call.config.axis ?? -1))) }, call.name),
      layout,
      shape: call.outputShape,
    };
  },
  // Training-time noise: nothing at inference, as in tfjs' predict().
  Dropout: identity,
  SpatialDropout1D: identity,
  GaussianNoise: identity,
  GaussianDropout: identity,
  AlphaDropout: identity,
};

export const SUPPORTED_LAYERS = ['InputLayer', ...Object.keys(CONVERTERS)].sort();
