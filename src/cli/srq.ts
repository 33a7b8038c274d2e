#!/usr/bin/env node
// The `srq` executable (package.json "bin"; `npm run srq -- …` in development). The work is in
// main.ts, which tests import without running anything.
import { main } from './main.js';

main(process.argv.slice(2)).then((code) => {
  // exitCode rather than exit(): pending writes to stdout (a piped JSON report) still flush.
  process.exitCode = code;
});
