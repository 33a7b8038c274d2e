// Debian's headless Chromium for the browser tests (test/browser.test.ts, test/demo-browser.test.ts).
// Never downloaded: `bash .ci/setup-chromium.sh` installs it; SRQ_CHROMIUM overrides the path.

import { existsSync } from 'node:fs';

export const CHROMIUM = process.env.SRQ_CHROMIUM || '/usr/bin/chromium';

/** Nothing phoning home. Playwright adds a fresh, temporary --user-data-dir itself (and deletes it
 * on close); it refuses one passed here. */
export const QUIET_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];

/** WebGPU on SwiftShader; without these flags headless Chromium has no adapter (a browser without WebGPU). */
export const WEBGPU_ARGS = ['--enable-unsafe-webgpu', '--enable-unsafe-swiftshader'];

/** CI or SRQ_REQUIRE_BROWSER=1: a missing browser or build fails the browser tests instead of skipping them. */
export const BROWSER_REQUIRED = Boolean(process.env.CI) || process.env.SRQ_REQUIRE_BROWSER === '1';

/** Why a browser test cannot run here (Chromium or the built `distBrowserJs` missing), or null; never a reason when required. */
export function browserSkipReason(distBrowserJs: string): string | null {
  if (BROWSER_REQUIRED) return null;
  if (!existsSync(CHROMIUM)) {
    return `${CHROMIUM} is missing (install it with \`bash .ci/setup-chromium.sh\`; CI or SRQ_REQUIRE_BROWSER=1 make this a failure)`;
  }
  if (!existsSync(distBrowserJs)) return 'dist/ is not built: run `npm run build` (npm test does it first)';
  return null;
}
