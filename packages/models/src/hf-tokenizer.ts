import { Template } from '@huggingface/jinja';
import { Tokenizer as TokenizersJs } from '@huggingface/tokenizers';
import type { Tokenizer } from './tokenizer.js';

/**
 * A Hugging Face `tokenizer.json` (byte-level BPE, SentencePiece-style Metaspace/byte-fallback,
 * WordPiece, …) through `@huggingface/tokenizers`, with the special tokens of
 * `tokenizer_config.json` and its chat template rendered by `@huggingface/jinja`.
 */

/** One chat message as chat templates expect it. */
export interface ChatMessage {
  /** 'system', 'user', 'assistant', … */
  role: string;
  /** The message text. */
  content: string;
}

/** The files of an HF tokenizer, parsed (or the template's text). */
export interface HFTokenizerFiles {
  /** `tokenizer.json`. */
  tokenizer: Record<string, unknown>;
  /** `tokenizer_config.json` (special tokens, `chat_template`), or {}. */
  config?: Record<string, unknown>;
  /** `chat_template.jinja` (takes precedence over the config's `chat_template`). */
  chatTemplate?: string | null;
}

/** A special token in `tokenizer_config.json`: a string or an AddedToken object `{ content }`. */
function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return null;
}

/**
 * Whether parsed JSON is an HF `tokenizer.json` (it has a `model`), not lowrank's own spec.
 *
 * @example
 * isHFTokenizerJson({ version: '1.0', model: { type: 'BPE' } }); // true
 * isHFTokenizerJson({ type: 'char', chars: ['a'] }); // false
 */
export function isHFTokenizerJson(json: unknown): json is Record<string, unknown> {
  return typeof json === 'object' && json !== null && typeof (json as { model?: unknown }).model === 'object';
}

/**
 * An HF tokenizer: `encode`/`decode` as the `tokenizers` library does, special tokens from
 * `tokenizer_config.json`, and `applyChatTemplate`.
 *
 * @example
 * ```ts
 * const tok = new HFTokenizer({ tokenizer: tokenizerJson, config: tokenizerConfig, chatTemplate });
 * tok.encode('Hello world'); // [42, 411, 81, 266, 273, 315]
 * tok.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true });
 * ```
 */
export class HFTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly eosTokenId: number | null;
  /** Beginning-of-text id, when the config names one. */
  readonly bosTokenId: number | null;
  /** The special tokens' text by role (bos_token, eos_token, unk_token, pad_token), as in the config. */
  readonly specialTokens: Readonly<Record<string, string>>;
  /** The chat template's source, or null. */
  readonly chatTemplate: string | null;
  private readonly tok: TokenizersJs;
  private template: Template | null = null;

  constructor(files: HFTokenizerFiles) {
    const config = files.config ?? {};
    this.tok = new TokenizersJs(files.tokenizer, config);
    const special: Record<string, string> = {};
    for (const role of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
      const t = tokenText(config[role]);
      if (t !== null) special[role] = t;
    }
    this.specialTokens = special;
    const id = (role: string): number | null =>
      special[role] === undefined ? null : (this.tok.token_to_id(special[role]) ?? null);
    this.bosTokenId = id('bos_token');
    this.eosTokenId = id('eos_token');
    let maxId = -1;
    for (const v of this.tok.get_vocab(true).values()) maxId = Math.max(maxId, v);
    this.vocabSize = maxId + 1;
    this.chatTemplate = files.chatTemplate ?? templateOf(config.chat_template);
  }

  /** Text → ids. Without `addSpecialTokens` (the default) as `tokenizer(text, add_special_tokens=False)`. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    if (text === '') return [];
    return this.tok.encode(text, { add_special_tokens: options.addSpecialTokens ?? false }).ids;
  }

  /** Ids → text (special tokens kept unless `skipSpecialTokens`). */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize)
        throw new Error(`HFTokenizer.decode: token id ${id} is outside [0, ${this.vocabSize})`);
    }
    if (ids.length === 0) return '';
    return this.tok.decode([...ids], {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  /** The token's id, or undefined when it is not in the vocabulary. */
  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /**
   * The conversation rendered by the model's chat template (as transformers'
   * `apply_chat_template(messages, tokenize=False)`), with the special tokens as variables.
   */
  applyChatTemplate(
    messages: readonly ChatMessage[],
    options: { addGenerationPrompt?: boolean } = {},
  ): string {
    if (this.chatTemplate === null) throw new Error('applyChatTemplate: this tokenizer has no chat template');
    this.template ??= new Template(this.chatTemplate);
    return this.template.render({
      ...this.specialTokens,
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: options.addGenerationPrompt ?? false,
    });
  }
}

/** A config's `chat_template`: a string, or a list of named templates (the 'default' one). */
function templateOf(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v as { name?: unknown; template?: unknown }[];
    const t = named.find((x) => x.name === 'default') ?? named[0];
    return typeof t?.template === 'string' ? t.template : null;
  }
  return null;
}
