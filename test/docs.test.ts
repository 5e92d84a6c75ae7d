/**
 * The docs cannot drift from the tree: every relative link in a tracked Markdown file points at a
 * file that exists (and at a heading that exists, for `#anchor` links into Markdown), and every
 * setting either tier reads has its row in docs/configuration.md, the only copy of the tables.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { EdgeEnv } from '../edge/config.ts';
import { WorkerEnv } from '../gpu-worker/config.ts';

const ROOT = resolve(import.meta.dirname, '..');
const markdownFiles = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.md'], {
  cwd: ROOT,
  encoding: 'utf8',
})
  .split('\n')
  .filter(Boolean);

/** Markdown without its fenced code blocks and inline code spans (links there are not links). */
const prose = (text: string) => text.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, (span) => span.replace(/[[\]()]/g, ' '));

/** GitHub's anchors for a file's headings (lowercased, punctuation dropped, spaces to hyphens, repeats numbered). */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const [, heading] of text.replace(/^```[\s\S]*?^```/gm, '').matchAll(/^#{1,6} (.+)$/gm)) {
    const slug = heading!
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/ /g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    result.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return result;
}

describe('docs', () => {
  it('every relative link points at a file and heading that exist', () => {
    const broken: string[] = [];
    for (const file of markdownFiles) {
      const text = readFileSync(join(ROOT, file), 'utf8');
      for (const [, target] of prose(text).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^(https?:|mailto:)/.test(target!)) continue;
        const [path, anchor] = target!.split('#') as [string, string | undefined];
        const absolute = path ? resolve(ROOT, dirname(file), path) : join(ROOT, file);
        if (!existsSync(absolute)) {
          broken.push(`${file}: ${target} (no such file)`);
          continue;
        }
        if (anchor && absolute.endsWith('.md') && !anchors(readFileSync(absolute, 'utf8')).has(anchor)) {
          broken.push(`${file}: ${target} (no such heading)`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('the README stays an entry point', () => {
    expect(readFileSync(join(ROOT, 'README.md'), 'utf8').split('\n').length).toBeLessThanOrEqual(160);
  });

  it('docs/configuration.md documents every setting of both tiers', () => {
    const table = readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8');
    const settings = (schema: z.ZodType) => Object.keys((schema as unknown as { in: z.ZodObject }).in.shape);
    const undocumented = [...settings(EdgeEnv), ...settings(WorkerEnv)].filter(
      (name) => !new RegExp(`^\\|[^|\\n]*\`${name}\``, 'm').test(table),
    );
    expect(undocumented).toEqual([]);
  });
});
