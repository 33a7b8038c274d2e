/**
 * Continues a zoo training run where it stopped: `npx tsx scripts/zoo-resume.ts <id> [--iters N]`.
 *
 * Takes the arguments of the run's last `start` line in zoo/<id>/log.jsonl (what `srq train` was
 * last started with), adds --resume, optionally raises --iters (a cosine schedule then stretches
 * over the new total), and runs `srq train` with them. SIGTERM or Ctrl-C writes a checkpoint.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main as srq } from '../src/cli/main.js';

async function run(): Promise<number> {
  const [id, flag, value] = process.argv.slice(2);
  if (!id || (flag !== undefined && (flag !== '--iters' || !/^\d+$/.test(value ?? '')))) {
    console.error('usage: npx tsx scripts/zoo-resume.ts <id> [--iters N]');
    return 2;
  }
  const log = join('zoo', id, 'log.jsonl');
  const starts = (await readFile(log, 'utf8')).split('\n').filter((l) => l.includes('"event":"start"'));
  if (starts.length === 0) {
    console.error(`${log} has no start line to resume from`);
    return 2;
  }
  const argv = [...(JSON.parse(starts.at(-1)!) as { argv: string[] }).argv];
  if (flag === '--iters') argv[argv.indexOf('--iters') + 1] = value;
  if (!argv.includes('--resume')) argv.push('--resume');
  console.error(`srq train ${argv.join(' ')}`);
  return srq(['train', ...argv]);
}

run().then((code) => process.exit(code), (e: unknown) => {
  console.error(e);
  process.exit(1);
});
