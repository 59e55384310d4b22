#!/usr/bin/env node
// The kvwire CLI: `kvwire <command> [options]` (cli/main.ts). Compiled code lives in dist/.
import { main } from '../dist/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
