// Per test file: register the webgpu backend when the run includes it (each worker has its own
// device), keep cpu the default backend, and release the device afterwards so workers exit.
import { afterAll, beforeAll } from 'vitest';
import { setBackend } from '../../src/index.js';
import { shutdown, useBackend } from '../../src/backends/select.js';
import { testsWebgpu } from './backends.js';

if (testsWebgpu()) {
  beforeAll(async () => {
    await useBackend('webgpu', { require: true });
    setBackend('cpu');
  });
  afterAll(() => shutdown());
}
