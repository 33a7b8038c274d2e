// The main job on its built-in default: upscale an image ×3 with the zoo's FSRCNN (trained by
// this library, see zoo/fsrcnn-x3/README.md) and compare it with bicubic. The image is Set5's
// butterfly when ../shared is beside the checkout, else a synthetic Siemens star; the HR image is
// shrunk with MATLAB-exact bicubic, upscaled back, and measured by the protocol (Y, shave 3).
// Writes the LR, bicubic and FSRCNN images to demo-out/.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Image, Upscaler, createImage, imresize, modcrop, psnr, readPng, ssim, writePng } from '../index.js';

const SCALE = 3;
const MODEL = 'fsrcnn-x3';
// ../shared beside the checkout, or SRQ_SHARED_DIR (as for the tests).
const shared = process.env.SRQ_SHARED_DIR ?? fileURLToPath(new URL('../../../shared/', import.meta.url));
const butterfly = join(shared, 'data/Set5/HR/butterfly.png');

/** A Siemens star (hard edges whose spacing shrinks towards the centre) over a colour ramp. */
function testPattern(size: number): Image {
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const spoke = Math.cos(24 * Math.atan2(y - size / 2, x - size / 2)) > 0 ? 1 : 0.15;
      const i = 3 * (y * size + x);
      data[i] = Math.round(255 * spoke * (0.3 + 0.7 * (x / size)));
      data[i + 1] = Math.round(235 * spoke);
      data[i + 2] = Math.round(255 * spoke * (1 - 0.7 * (y / size)));
    }
  }
  return createImage(size, size, 3, data);
}

async function main(): Promise<void> {
  const fromShared = existsSync(butterfly);
  const name = fromShared ? 'butterfly' : 'star';
  const hr = modcrop(fromShared ? await readPng(butterfly) : testPattern(255), SCALE);
  console.log(fromShared ? `image: ${butterfly}` : `image: a synthetic Siemens star (${butterfly} is absent)`);
  const lr = imresize(hr, 1 / SCALE);

  const out = 'demo-out';
  await mkdir(out, { recursive: true });
  await writePng(`${out}/${name}_lr.png`, lr);
  console.log(`HR ${hr.width}×${hr.height} → LR ${lr.width}×${lr.height} (MATLAB-exact bicubic), upscaled ×${SCALE} back:`);
  for (const spec of ['bicubic', MODEL]) {
    // The library's Upscaler, as a user would call it (bicubic is the baseline with the same interface).
    const upscaler = spec === 'bicubic' ? Upscaler.bicubic(SCALE) : await Upscaler.load(spec);
    try {
      const start = performance.now();
      const sr = await upscaler.upscale(lr);
      const ms = performance.now() - start;
      const file = `${out}/${name}_x${SCALE}_${spec}.png`;
      await writePng(file, sr);
      const quality = `PSNR ${psnr(sr, hr, { shave: SCALE }).toFixed(2)} dB, SSIM ${ssim(sr, hr, { shave: SCALE }).toFixed(4)}`;
      console.log(`  ${spec.padEnd(9)}  ${quality}  ${ms.toFixed(0).padStart(5)} ms  → ${file}`);
    } finally {
      upscaler.dispose();
    }
  }
  console.log(`(${MODEL} is the library's own FSRCNN; upscale any PNG with: npm run srq -- upscale in.png out.png --model ${MODEL})`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? `${error.name}: ${error.message}` : error);
  process.exit(1);
});
