// pacote ships no types; this declares the one call the model fetcher makes.
declare module 'pacote' {
  import type { Readable } from 'node:stream';

  /** Flat npm options: registry, cache, integrity, proxies, `//host/:_authToken`, ... */
  export type PacoteOptions = Record<string, unknown>;

  interface Tarball {
    /** Stream the tarball (integrity-checked when `integrity` is given) into `handler`. */
    stream<T>(spec: string, handler: (stream: Readable) => Promise<T>, opts?: PacoteOptions): Promise<T>;
  }

  const pacote: {
    tarball: Tarball;
    extract(spec: string, dest: string, opts?: PacoteOptions): Promise<{ resolved: string; integrity: string; from: string }>;
  };
  export default pacote;
}
