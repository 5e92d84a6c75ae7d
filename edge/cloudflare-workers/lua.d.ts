// wrangler bundles *.lua as text modules (see the [[rules]] in wrangler.toml).
declare module '*.lua' {
  const source: string;
  export default source;
}
