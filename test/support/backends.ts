/**
 * The backends the conformance suites run on. 'cpu' by default; set SRQ_TEST_BACKENDS to a comma
 * list (e.g. `SRQ_TEST_BACKENDS=cpu,webgpu`) to add backends without touching the suites.
 */
export function testBackends(): string[] {
  const env = process.env.SRQ_TEST_BACKENDS;
  if (env === undefined || env.trim() === '') return ['cpu'];
  const names = env.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (names.length === 0) throw new Error(`SRQ_TEST_BACKENDS='${env}' names no backend`);
  return [...new Set(names)];
}
