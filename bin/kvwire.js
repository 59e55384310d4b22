#!/usr/bin/env node
// The kvwire CLI: `kvwire <info|bench|bench-index|demo> [options]`. Compiled code lives in dist/.
import { main } from '../dist/lib/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
