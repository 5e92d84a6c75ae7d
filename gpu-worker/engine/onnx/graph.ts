/**
 * A small builder of ONNX graphs over `onnx-proto` (protobufjs code generated from ONNX's own
 * onnx.proto): nodes with typed attributes, float32 / int64 initializers stored as raw bytes,
 * unique value names, and the serialised ModelProto. It knows nothing of Keras (see layers.ts).
 *
 * @example
 * const g = new OnnxGraph();
 * const y = g.op('Relu', [g.input('x', 'float', ['batch', 4])]);
 * g.output(y, 'float', ['batch', 4]);
 * const bytes = g.toBytes({ producer: 'resnet-edge', docString: '...' });
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type TensorProto = InstanceType<typeof onnx.TensorProto>;
type NodeProto = InstanceType<typeof onnx.NodeProto>;
type ValueInfoProto = InstanceType<typeof onnx.ValueInfoProto>;

/**
 * ONNX IR version 7 (ONNX 1.8) with opset 13: old enough for every ONNX Runtime, TensorRT and
 * converter in use, new enough for what the layers need (Softmax over one axis, Pad and Clip with
 * their bounds as inputs).
 */
export const IR_VERSION = 7;
export const OPSET = 13;

/** Part of every cache key (cache.ts): bump it whenever the graph convert.ts writes changes. */
export const CONVERTER_VERSION = 1;

/** Every converted graph's input and output names (the ONNX classifier reads them from the session too). */
export const INPUT_NAME = 'image';
export const OUTPUT_NAME = 'probabilities';

export type ElementType = 'float' | 'uint8' | 'int64';
const ELEMENT_TYPES: Record<ElementType, number> = {
  float: onnx.TensorProto.DataType.FLOAT,
  uint8: onnx.TensorProto.DataType.UINT8,
  int64: onnx.TensorProto.DataType.INT64,
};

/** An attribute value with its ONNX type spelled out (an integer-valued float is still a float). */
export type Attribute = { int: number } | { ints: number[] } | { float: number };

export const int = (value: number): Attribute => ({ int: value });
export const ints = (value: number[]): Attribute => ({ ints: value });
export const float = (value: number): Attribute => ({ float: value });

export class OnnxGraph {
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly used = new Set<string>();

  /** `base`, or `base_2`, `base_3`...: every value and node name in a graph is unique. */
  unique(base: string): string {
    const clean = base.replace(/[^\w./:-]/g, '_') || 'value';
    let name = clean;
    for (let n = 2; this.used.has(name); n++) name = `${clean}_${n}`;
    this.used.add(name);
    return name;
  }

  /** A graph input; `dims`: sizes, or names for dimensions fixed only at run time ('batch'). */
  input(name: string, type: ElementType, dims: (number | string)[]): string {
    const unique = this.unique(name);
    this.inputs.push(valueInfo(unique, type, dims));
    return unique;
  }

  output(value: string, type: ElementType, dims: (number | string)[]): void {
    this.outputs.push(valueInfo(value, type, dims));
  }

  /** A float32 constant (weights, means, bounds). Its bytes are referenced, not copied, until toBytes. */
  floats(name: string, dims: number[], data: Float32Array): string {
    return this.constant(name, 'float', dims, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  int64s(name: string, values: number[]): string {
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    return this.constant(name, 'int64', [values.length], new Uint8Array(data.buffer));
  }

  /** One node with one output; returns the output's name (unique, from `name` or the op type). */
  op(opType: string, inputs: string[], attributes: Record<string, Attribute> = {}, name?: string): string {
    const output = this.unique(name ?? opType.toLowerCase());
    this.nodes.push(
      onnx.NodeProto.create({
        name: output,
        opType,
        input: inputs,
        output: [output],
        attribute: Object.entries(attributes).map(([key, value]) => attribute(key, value)),
      }),
    );
    return output;
  }

  /** `input` under a name reserved earlier with unique() (a graph output's fixed name). */
  identity(input: string, reserved: string): string {
    this.nodes.push(onnx.NodeProto.create({ name: reserved, opType: 'Identity', input: [input], output: [reserved] }));
    return reserved;
  }

  get nodeCount(): number {
    return this.nodes.length;
  }

  toBytes(meta: {
    producer: string;
    producerVersion: string;
    graphName: string;
    docString?: string;
    metadata?: Record<string, string>;
  }): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: meta.producer,
      producerVersion: meta.producerVersion,
      docString: meta.docString ?? '',
      metadataProps: Object.entries(meta.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: onnx.GraphProto.create({
        name: meta.graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      }),
    });
    return onnx.ModelProto.encode(model).finish();
  }

  private constant(name: string, type: ElementType, dims: number[], rawData: Uint8Array): string {
    const unique = this.unique(name);
    this.initializers.push(onnx.TensorProto.create({ name: unique, dataType: ELEMENT_TYPES[type], dims, rawData }));
    return unique;
  }
}

function valueInfo(name: string, type: ElementType, dims: (number | string)[]): ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: ELEMENT_TYPES[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

function attribute(name: string, value: Attribute) {
  const { AttributeType } = onnx.AttributeProto;
  if ('int' in value) return onnx.AttributeProto.create({ name, type: AttributeType.INT, i: value.int });
  if ('ints' in value) return onnx.AttributeProto.create({ name, type: AttributeType.INTS, ints: value.ints });
  return onnx.AttributeProto.create({ name, type: AttributeType.FLOAT, f: value.float });
}
