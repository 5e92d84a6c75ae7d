import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'test/**/*.test.ts',
      'edge/**/*.test.ts',
      'gpu-worker/**/*.test.ts',
      'shared/**/*.test.ts',
      'dev/**/*.test.ts',
      'bench/**/*.test.ts',
    ],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    // Files start their own redis-server and processes; two cores are the limit here.
    fileParallelism: false,
  },
});
