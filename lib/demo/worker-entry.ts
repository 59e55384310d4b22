/**
 * Entry module of a demo worker process (forked by `runDemo`).
 *
 * @packageDocumentation
 */
import { serveDemoWorker } from './worker.js';

serveDemoWorker();
