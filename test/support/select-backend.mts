// Child process for test/backend-select.test.ts: selects a backend from SRQ_BACKEND and prints
// which one it got, so the fallback path runs in a process whose Vulkan driver can be hidden.
import { getBackend, shutdown, tensor, useBackend } from '../../src/index.js';

await useBackend(undefined, { log: (line) => console.log(`log: ${line}`) });
const name = getBackend().name;
const y = await tensor([1, 2, 3]).add(1).data();
console.log(`backend: ${name}; result ${Array.from(y).join(',')}`);
shutdown();
