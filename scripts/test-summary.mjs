#!/usr/bin/env node
/**
 * Print the one summary line the CI harness reads, `N passed, N failed[, N skipped]`, from vitest's JSON
 * reporter output (toolchain.md: the harness does not read vitest's own summary).
 *
 *   node scripts/test-summary.mjs [RESULTS_JSON] [VITEST_EXIT_CODE]
 *
 * Counts are test cases. A test file that failed without any failed test case (it did not load, or a
 * hook failed) counts as one failure, so that a broken file can never look like a green run.
 * Exits 1 if anything failed, if vitest itself exited non-zero, or if the results are missing.
 */
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? '.vitest-results.json';
const vitestExit = process.argv[3] === undefined ? 0 : Number(process.argv[3]);

let results;
try {
  results = JSON.parse(readFileSync(file, 'utf8'));
} catch (e) {
  console.error(`test-summary: cannot read vitest results from ${file}: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}

let passed = 0;
let failed = 0;
let skipped = 0;
for (const suite of Array.isArray(results.testResults) ? results.testResults : []) {
  let failedHere = 0;
  for (const t of Array.isArray(suite.assertionResults) ? suite.assertionResults : []) {
    if (t.status === 'passed') passed++;
    else if (t.status === 'failed') failedHere++;
    else skipped++; // skipped, pending, todo, disabled
  }
  if (suite.status === 'failed' && failedHere === 0) {
    failedHere = 1;
    const why = typeof suite.message === 'string' && suite.message !== '' ? suite.message.split('\n')[0] : 'failed';
    console.error(`test-summary: ${suite.name}: ${why}`);
  }
  failed += failedHere;
}

let exitCode = failed > 0 ? 1 : 0;
if (results.success === false && exitCode === 0) {
  console.error('test-summary: vitest reports the run as unsuccessful (e.g. an unhandled error)');
  exitCode = 1;
}
if (Number.isNaN(vitestExit) || vitestExit !== 0) {
  if (exitCode === 0) console.error(`test-summary: vitest exited with code ${process.argv[3]}`);
  exitCode = 1;
}

console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`);
process.exit(exitCode);
