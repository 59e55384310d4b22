/**
 * Whether an agent keeps the Node.js process alive: while any operation is pending (a connect, a
 * transfer, a notification being sent or awaited, a region being released), or always when the
 * agent was created with `keepAlive` or `ref()`'d. The engine's handle is ref'd or unref'd only when
 * that answer changes.
 *
 * @packageDocumentation
 */

/** The part of an engine that holds the process open. */
export interface Refable {
  ref(): void;
  unref(): void;
}

/** Counts an agent's pending operations and refs its engine while there are any. @internal */
export class KeepAlive {
  readonly #engine: Refable;
  readonly #byDefault: boolean;
  #override: boolean | undefined;
  #pending = 0;
  #refed = false;
  #closed = false;

  /** `byDefault`: keep the process alive even while idle (`AgentOptions.keepAlive`). */
  constructor(engine: Refable, byDefault: boolean) {
    this.#engine = engine;
    this.#byDefault = byDefault;
    this.#update();
  }

  /** One more (+1) or one fewer (-1) pending operation. */
  adjust(delta: number): void {
    this.#pending += delta;
    this.#update();
  }

  /** `ref()` (true) / `unref()` (false): overrides the default while idle. */
  override(keepAlive: boolean): void {
    this.#override = keepAlive;
    this.#update();
  }

  /** The engine is gone: nothing is counted or ref'd any more. */
  close(): void {
    this.#closed = true;
    this.#pending = 0;
  }

  #update(): void {
    if (this.#closed) return;
    const want = this.#pending > 0 || (this.#override ?? this.#byDefault);
    if (want === this.#refed) return;
    this.#refed = want;
    if (want) this.#engine.ref();
    else this.#engine.unref();
  }
}
