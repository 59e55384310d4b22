/**
 * The chat template of kvwire's generated models. They have no special chat tokens, so the
 * template is plain text: for each message `<|{role}|>\n{content}\n`, then `<|assistant|>\n` when
 * a generation prompt is asked for, after the BOS token. `/tokenize` with `messages` and
 * `/v1/chat/completions` both go through {@link chatPromptTokens}, so a router hashing the ids
 * `/tokenize` returns hashes exactly what the engine caches.
 *
 * @packageDocumentation
 */
import type { Runtime } from '../runtimes/types.js';

/** A chat message after validation. */
export interface ChatMessage {
  /** system, user, assistant, tool, developer. */
  readonly role: string;
  /** Text content. */
  readonly content: string;
}

/** The template's text for `messages`. */
export function renderChat(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
  let s = '';
  for (const m of messages) s += `<|${m.role}|>\n${m.content}\n`;
  if (addGenerationPrompt) s += '<|assistant|>\n';
  return s;
}

/** The prompt token ids of a chat request: BOS, then the rendered template. */
export function chatPromptTokens(
  runtime: Runtime,
  messages: readonly ChatMessage[],
  addGenerationPrompt: boolean,
): number[] {
  return [runtime.bos, ...runtime.tokenize(renderChat(messages, addGenerationPrompt))];
}

/** The prompt token ids of a completion prompt: BOS (when `addSpecialTokens`), then the text. */
export function completionPromptTokens(runtime: Runtime, prompt: string, addSpecialTokens: boolean): number[] {
  return addSpecialTokens ? [runtime.bos, ...runtime.tokenize(prompt)] : runtime.tokenize(prompt);
}
