// Debian's headless Chromium for the browser tests (test/browser.test.ts, test/demo-browser.test.ts).
// Never downloaded: `bash .ci/setup-chromium.sh` installs it; SRQ_CHROMIUM overrides the path.

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
