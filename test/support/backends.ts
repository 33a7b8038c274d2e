/**
 * The backends the conformance suites run on: cpu, plus webgpu when the global setup found an
 * adapter. SRQ_TEST_BACKENDS (a comma list, e.g. `cpu` or `cpu,webgpu`) overrides the choice.
 */
export function testBackends(): string[] {
  const env = process.env.SRQ_TEST_BACKENDS;
  if (env === undefined || env.trim() === '') {
    return process.env.SRQ_WEBGPU_AVAILABLE === '1' ? ['cpu', 'webgpu'] : ['cpu'];
  }
  const names = env.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (names.length === 0) throw new Error(`SRQ_TEST_BACKENDS='${env}' names no backend`);
  return [...new Set(names)];
}

/** Whether the suites run on webgpu in this run. */
export function testsWebgpu(): boolean {
  return testBackends().includes('webgpu');
}
