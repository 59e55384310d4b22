/**
 * The vocabulary of kvwire's generated models: a SentencePiece-style ("llama" tokenizer model in
 * llama.cpp) byte-fallback vocabulary. Ids 0-2 are `<unk>`, `<s>`, `</s>`; 3-258 the 256 byte
 * tokens `<0x00>`..`<0xFF>` (so any UTF-8 text tokenizes); then the printable ASCII characters
 * (space written as SentencePiece's `▁`) and a fixed list of common English pieces, each alone
 * and with a leading `▁`, which llama.cpp's tokenizer merges by score.
 *
 * The list is kvwire's own and fixed: changing it changes every generated model (and their
 * hashes, which a test pins).
 *
 * @packageDocumentation
 */

/** llama.cpp token types (`llama_token_type`). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, BYTE: 6 } as const;

/** SentencePiece's word-boundary marker, which stands for a space. */
export const SPACE_PIECE = '\u2581';

// Common English letter groups, most frequent first (kvwire's own list).
const PIECES = (
  'the and ing ion ent her for tha ter was you ith ver all wit thi tio er in th re an on at en ed nd ha ' +
  'es or is it ar te of ou st al le ng se as co de ra'
).split(' ');

/** A vocabulary: pieces, merge scores and token types, index = token id. */
export interface Vocabulary {
  /** Piece text per token id. */
  readonly tokens: readonly string[];
  /** Merge priority per token id (higher merges first). */
  readonly scores: readonly number[];
  /** llama.cpp token type per token id. */
  readonly types: readonly number[];
  /** Begin-of-sequence id. */
  readonly bos: number;
  /** End-of-sequence id. */
  readonly eos: number;
  /** Unknown-token id. */
  readonly unk: number;
}

/** Builds the fixed vocabulary (444 tokens). */
export function buildVocabulary(): Vocabulary {
  const tokens: string[] = ['<unk>', '<s>', '</s>'];
  const types: number[] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL];
  const scores: number[] = [0, 0, 0];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TokenType.BYTE);
    scores.push(0);
  }
  for (let c = 32; c < 127; c++) {
    tokens.push(c === 32 ? SPACE_PIECE : String.fromCharCode(c));
    types.push(TokenType.NORMAL);
    scores.push(-1);
  }
  for (const p of PIECES) {
    tokens.push(p);
    types.push(TokenType.NORMAL);
    scores.push(-1 + p.length / 10);
    tokens.push(SPACE_PIECE + p);
    types.push(TokenType.NORMAL);
    scores.push(-0.5 + p.length / 10);
  }
  return { tokens, scores, types, bos: 1, eos: 2, unk: 0 };
}

/**
 * How much the generated model favours emitting `token`, in logits: spaces and lower-case
 * letters and pieces most, punctuation a little, other printable characters less, and never a
 * control or byte token (so generated text is printable ASCII that reads like words, and the
 * end-of-sequence token is never chosen: a generation runs to its `max_tokens` or a stop string).
 */
export function emissionBias(v: Vocabulary, token: number): number {
  if (v.types[token] !== TokenType.NORMAL) return -30;
  const piece = v.tokens[token]!;
  if (piece === SPACE_PIECE) return 2.5;
  if (/^[a-z\u2581]+$/.test(piece)) return 1.5;
  if (piece === '.' || piece === ',') return 0.5;
  return -3;
}
