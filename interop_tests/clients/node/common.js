// Shared by the Node client programs: bounded steps and the "ok NAME" / "FAIL NAME: error" / "done"
// lines that interop_tests/test_other_languages.py asserts on.
"use strict";

const TIMEOUT_MS = 10000;

function withTimeout(name, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function runAll(steps) {
  for (const [name, step] of steps) {
    try {
      await withTimeout(name, step());
    } catch (error) {
      console.log(`FAIL ${name}: ${error && error.stack ? error.stack : error}`);
      process.exit(1);
    }
    console.log(`ok ${name}`);
  }
  console.log("done");
  process.exit(0);
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

// A promise and its resolve function, for waiting on callbacks.
function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

module.exports = { runAll, expect, deferred, TIMEOUT_MS };
