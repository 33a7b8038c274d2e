/**
 * Writes the model card of a trained zoo model: `npx tsx scripts/zoo-card.ts <id>`.
 *
 * Reads zoo/<id>/model.safetensors (model + config metadata) and zoo/<id>/log.jsonl (what
 * `srq train` logged: one `start` line per run or resume, progress lines with `elapsed`, and a
 * `stop` line when a run is interrupted),
 * measures Set5 and Set14 with `srq eval --json` on the cpu backend (the reference: test/zoo.test.ts
 * re-measures the card's Set5 figure to 1e-9 there, and to 0.02 dB on webgpu), and writes
 * zoo/<id>/card.json and zoo/<id>/README.md; then rebuilds the table of zoo/README.md
 * from every card.json. Needs ../shared beside the checkout.
 */
import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main as srq } from '../src/cli/main.js';
import { loadSafetensors } from '../src/index.js';

const ZOO_DIR = 'zoo';
const SHARED = '../shared/data';

/** What card.json holds. */
export interface ZooCard {
  id: string;
  model: string;
  config: Record<string, unknown>;
  parameters: number;
  data: string[];
  iterations: number;
  /** Sum over the runs (start → last logged step) of training time, validation included. */
  wallTimeSeconds: number;
  backend: string;
  /** `srq train` arguments of each run (the first trains, later ones resume). */
  commands: string[][];
  /** Initial weights (--init), if the model was fine-tuned from another. */
  init?: string;
  eval: Record<'Set5' | 'Set14', { psnr: number; ssim: number }>;
}

interface LogLine {
  event?: string;
  argv?: string[];
  backend?: string;
  iteration?: number;
  elapsed?: number;
}

async function evaluate(file: string, set: string, scale: number): Promise<{ psnr: number; ssim: number }> {
  let out = '';
  const code = await srq(['eval', '--model', file, '--data', join(SHARED, set), '--scale', String(scale), '--backend', 'cpu', '--json'], {
    stdout: (t) => { out += t; },
    stderr: (t) => process.stderr.write(t),
    stderrIsTTY: false,
  });
  if (code !== 0) throw new Error(`srq eval on ${set} exited with ${code}`);
  const { mean } = JSON.parse(out) as { mean: { psnr: number; ssim: number } };
  return { psnr: mean.psnr, ssim: mean.ssim };
}

function option(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

async function makeCard(id: string): Promise<ZooCard> {
  const dir = join(ZOO_DIR, id);
  const weights = join(dir, 'model.safetensors');
  const { metadata, tensors } = await loadSafetensors(weights);
  const parameters = Object.values(tensors).reduce((n, t) => n + t.size, 0);
  const config = JSON.parse(metadata.config) as Record<string, unknown>;
  const lines = (await readFile(join(dir, 'log.jsonl'), 'utf8')).split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as LogLine);
  const starts = lines.filter((l) => l.event === 'start');
  if (starts.length === 0) throw new Error(`${dir}/log.jsonl has no 'start' line (trained before srq train logged them)`);
  // Each run's elapsed restarts at 0; its last logged value is the run's time.
  let wall = 0;
  let runMax = 0;
  for (const l of lines) {
    if (l.event === 'start') {
      wall += runMax;
      runMax = 0;
    } else if (typeof l.elapsed === 'number') runMax = Math.max(runMax, l.elapsed);
  }
  wall += runMax;
  const iterations = Math.max(...lines.map((l) => (l.event === 'start' ? 0 : l.iteration ?? 0)));
  const commands = starts.map((s) => s.argv ?? []);
  const first = commands[0];
  const data = (option(first, 'data') ?? '').split(',').filter(Boolean);
  const init = option(first, 'init');
  const scale = config.scale as number;
  return {
    id, model: metadata.model, config, parameters, data, iterations, wallTimeSeconds: Math.round(wall),
    backend: [...new Set(starts.map((s) => s.backend))].join(' + '), commands, ...(init ? { init } : {}),
    eval: { Set5: await evaluate(weights, 'Set5', scale), Set14: await evaluate(weights, 'Set14', scale) },
  };
}

/** A config as a JS object literal: { scale: 3, n_feats: 32 }. */
const literal = (config: Record<string, unknown>, extra = '') =>
  `{ ${[...Object.entries(config).map(([k, v]) => `${k}: ${JSON.stringify(v)}`), ...(extra ? [extra] : [])].join(', ')} }`;

const hours = (s: number) => (s >= 3600 ? `${(s / 3600).toFixed(1)} h` : `${Math.round(s / 60)} min`);

function cardMarkdown(c: ZooCard, notes: string): string {
  // Arguments a shell would read differently (a --holdout regex) go in single quotes.
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`);
  const cmd = (argv: string[]) => `npx tsx src/cli/srq.ts train ${argv.map(quote).join(' ')}`;
  return `# ${c.id}

${notes.trim()}

| | |
|---|---|
| architecture | \`createModel('${c.model}', ${literal(c.config)})\`, ${c.parameters.toLocaleString('en')} parameters |
| load | \`createModel('${c.model}', ${literal(c.config, 'pretrained: true')})\`, \`loadPretrained('${c.id}')\`, \`srq eval --model ${c.id}\` |
| data | ${c.data.map((d) => `\`${d}\``).join(' + ')}, LR made on the fly with our MATLAB-exact bicubic |
| training | ${c.iterations.toLocaleString('en')} iterations${c.init ? `, starting from \`${c.init}\`` : ''} |
| wall time | ${hours(c.wallTimeSeconds)} on the ${c.backend} backend (a 2-core machine) |
| Set5 ×${c.config.scale as number} | **${c.eval.Set5.psnr.toFixed(2)} dB** PSNR, ${c.eval.Set5.ssim.toFixed(4)} SSIM |
| Set14 ×${c.config.scale as number} | ${c.eval.Set14.psnr.toFixed(2)} dB PSNR, ${c.eval.Set14.ssim.toFixed(4)} SSIM |

PSNR/SSIM: \`srq eval\`, Y channel, borders shaved by the scale (the protocol of ALGORITHMS.md §7).

Trained with:

\`\`\`sh
${c.commands.map(cmd).join('\n')}
\`\`\`
`;
}

/** The hand-written part of a card: the text between the title and the table, kept across rewrites. */
async function existingNotes(path: string): Promise<string> {
  if (!existsSync(path)) return 'Trained by @srq/core itself.';
  const text = await readFile(path, 'utf8');
  const match = /^# .*\n\n([\s\S]*?)\n\n\| \| \|/m.exec(text);
  return match ? match[1] : 'Trained by @srq/core itself.';
}

async function writeIndex(): Promise<void> {
  const cards: ZooCard[] = [];
  for (const id of (await readdir(ZOO_DIR)).sort()) {
    const path = join(ZOO_DIR, id, 'card.json');
    if (existsSync(path)) cards.push(JSON.parse(await readFile(path, 'utf8')) as ZooCard);
  }
  const rows = cards.map((c) => `| [${c.id}](${c.id}/README.md) | ${c.model} ${literal(c.config)} | ${c.parameters.toLocaleString('en')} | `
    + `${c.iterations.toLocaleString('en')} | ${hours(c.wallTimeSeconds)} (${c.backend}) | ${c.eval.Set5.psnr.toFixed(2)} / ${c.eval.Set5.ssim.toFixed(4)} | `
    + `${c.eval.Set14.psnr.toFixed(2)} / ${c.eval.Set14.ssim.toFixed(4)} |`);
  const path = join(ZOO_DIR, 'README.md');
  const text = await readFile(path, 'utf8');
  const begin = '<!-- cards -->';
  const end = '<!-- /cards -->';
  const table = `${begin}\n| model | architecture | parameters | iterations | wall time | Set5 PSNR / SSIM | Set14 PSNR / SSIM |\n|---|---|---|---|---|---|---|\n${rows.join('\n')}\n${end}`;
  if (!text.includes(begin)) throw new Error(`${path} has no ${begin} … ${end} block for the table`);
  await writeFile(path, text.replace(new RegExp(`${begin}[\\s\\S]*${end}`), table));
}

async function run(): Promise<void> {
  const [id, ...rest] = process.argv.slice(2);
  if (!id || rest.length > 0) throw new Error('usage: npx tsx scripts/zoo-card.ts <id>');
  const card = await makeCard(id);
  await writeFile(join(ZOO_DIR, id, 'card.json'), `${JSON.stringify(card, null, 2)}\n`);
  const readme = join(ZOO_DIR, id, 'README.md');
  await writeFile(readme, cardMarkdown(card, await existingNotes(readme)));
  await writeIndex();
  console.log(`${id}: Set5 ${card.eval.Set5.psnr.toFixed(2)} dB, Set14 ${card.eval.Set14.psnr.toFixed(2)} dB → ${readme}`);
}

run().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
