import { Tiktoken } from 'js-tiktoken/lite';
import r50kBase from 'js-tiktoken/ranks/r50k_base';

/** What the models, the demo and the CLI need from a tokenizer. */
export interface Tokenizer {
  /** Number of token ids (the model's `vocab_size` must be at least this). */
  readonly vocabSize: number;
  /** Id that ends a document (GPT-2's `<|endoftext|>`), when the tokenizer has one. */
  readonly eosTokenId: number | null;
  /** Text → token ids. */
  encode(text: string): number[];
  /** Token ids → text. */
  decode(ids: readonly number[]): string;
}

/**
 * GPT-2's byte-level BPE (the `r50k_base` ranks, 50,257 tokens) through js-tiktoken. The ranks are
 * bundled in the npm package as JavaScript, so this works offline.
 *
 * @example
 * ```ts
 * const tok = new GPT2Tokenizer();
 * tok.encode('Hello world'); // [15496, 995]
 * ```
 */
export class GPT2Tokenizer implements Tokenizer {
  readonly vocabSize = 50257;
  readonly eosTokenId = 50256;
  private readonly enc = new Tiktoken(r50kBase);

  /** `allowSpecial`: whether `<|endoftext|>` in the text becomes token 50256 (default) or plain text. */
  encode(text: string, options: { allowSpecial?: boolean } = {}): number[] {
    return this.enc.encode(text, options.allowSpecial === false ? [] : 'all', []);
  }

  /** Token ids → text (throws on an id outside the vocabulary). */
  decode(ids: readonly number[]): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new Error(`GPT2Tokenizer.decode: token id ${id} is outside [0, ${this.vocabSize})`);
      }
    }
    return this.enc.decode([...ids]);
  }
}

/**
 * Bytes of the UTF-8 encoding as tokens (vocab 256; no end-of-text token). Lossless for any text;
 * the tiny fixture models (vocab 256) use it.
 */
export class ByteTokenizer implements Tokenizer {
  readonly vocabSize = 256;
  readonly eosTokenId = null;
  /** The UTF-8 bytes of `text`. */
  encode(text: string): number[] {
    return Array.from(new TextEncoder().encode(text));
  }
  /** UTF-8 decoding of the bytes (invalid sequences become U+FFFD). */
  decode(ids: readonly number[]): string {
    return new TextDecoder().decode(Uint8Array.from(ids));
  }
}

/**
 * Characters as tokens, for the tiny demo models (nanoGPT's shakespeare_char): the vocabulary is
 * the sorted set of characters of a corpus, plus `\n` used as end of text when asked for. Unknown
 * characters fail loudly unless `unknown` names a character of the vocabulary to map them to.
 */
export class CharTokenizer implements Tokenizer {
  /** The vocabulary: token id i is `chars[i]`. */
  readonly chars: readonly string[];
  readonly eosTokenId: number | null;
  private readonly index: Map<string, number>;
  private readonly unknownId: number | null;

  constructor(chars: readonly string[], options: { eos?: string; unknown?: string } = {}) {
    const seen = new Set<string>();
    for (const c of chars) {
      if ([...c].length !== 1) throw new Error(`CharTokenizer: '${c}' is not a single character`);
      if (seen.has(c)) throw new Error(`CharTokenizer: character ${JSON.stringify(c)} appears twice`);
      seen.add(c);
    }
    this.chars = [...chars];
    this.index = new Map(this.chars.map((c, i) => [c, i]));
    this.eosTokenId = options.eos === undefined ? null : this.idOf(options.eos, 'eos');
    this.unknownId = options.unknown === undefined ? null : this.idOf(options.unknown, 'unknown');
  }

  /** The sorted set of characters of `text` (and of `extra`). */
  static fromText(
    text: string,
    options: { extra?: string; eos?: string; unknown?: string } = {},
  ): CharTokenizer {
    const set = new Set([...text, ...(options.extra ?? '')]);
    return new CharTokenizer([...set].sort(), options);
  }

  /** Number of characters in the vocabulary. */
  get vocabSize(): number {
    return this.chars.length;
  }

  /** One id per character (unknown characters throw, or map to `unknown` when set). */
  encode(text: string): number[] {
    const out: number[] = [];
    for (const c of text) {
      const id = this.index.get(c) ?? this.unknownId;
      if (id === null) {
        throw new Error(`CharTokenizer.encode: character ${JSON.stringify(c)} is not in the vocabulary`);
      }
      out.push(id);
    }
    return out;
  }

  /** The characters of the ids, concatenated. */
  decode(ids: readonly number[]): string {
    let s = '';
    for (const id of ids) {
      const c = this.chars[id];
      if (c === undefined)
        throw new Error(`CharTokenizer.decode: token id ${id} is outside [0, ${this.vocabSize})`);
      s += c;
    }
    return s;
  }

  /** The vocabulary as JSON (saved next to a checkpoint). */
  toJSON(): {
    /** Always 'char'. */
    type: 'char';
    /** The vocabulary. */
    chars: string[];
    /** The end-of-text character, or null. */
    eos: string | null;
  } {
    return {
      type: 'char',
      chars: [...this.chars],
      eos: this.eosTokenId === null ? null : this.chars[this.eosTokenId],
    };
  }

  private idOf(c: string, what: string): number {
    const id = this.index.get(c);
    if (id === undefined)
      throw new Error(`CharTokenizer: ${what} character ${JSON.stringify(c)} is not in the vocabulary`);
    return id;
  }
}

/** A tokenizer's JSON description (`tokenizer.json` beside our checkpoints). */
export type TokenizerSpec =
  | {
      /** GPT-2's BPE. */
      type: 'gpt2';
    }
  | {
      /** UTF-8 bytes. */
      type: 'byte';
    }
  | {
      /** Characters. */
      type: 'char';
      /** The vocabulary, in id order. */
      chars: string[];
      /** The end-of-text character. */
      eos?: string | null;
    };

/**
 * Builds a tokenizer from its JSON description (as stored in `tokenizer.json` beside our checkpoints).
 *
 * @example
 * tokenizerFromSpec({ type: 'char', chars: ['a', 'b', '\n'], eos: '\n' }).encode('ab'); // [0, 1]
 */
export function tokenizerFromSpec(spec: TokenizerSpec): Tokenizer {
  switch (spec.type) {
    case 'gpt2':
      return new GPT2Tokenizer();
    case 'byte':
      return new ByteTokenizer();
    case 'char':
      return new CharTokenizer(spec.chars, spec.eos == null ? {} : { eos: spec.eos });
    default:
      throw new Error(
        `tokenizer spec ${JSON.stringify((spec as { type?: unknown }).type ?? null)} is not one of gpt2, byte, char (an HF tokenizer.json loads with HFTokenizer / loadTokenizer)`,
      );
  }
}
