import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  type AutoCausalLM,
  type ChatMessage,
  type GenerateOptions,
  generate,
  HFTokenizer,
  PromptCache,
  type Tokenizer,
} from '@lowrank/models';
import { modelFootprint } from '@lowrank/nn';

/**
 * `lowrank chat`: a conversation with a model through its chat template, one stdin line a user
 * turn. Each turn renders the whole conversation so far (`applyChatTemplate(messages,
 * { addGenerationPrompt: true })`), encodes it, and generates the reply with the KV cache
 * (`generate`), which is kept across turns (`PromptCache`): a turn runs only the tokens its
 * prompt adds to the last one (the reply's last token and the new message), until a stop token (the config's, `generation_config.json`'s and the
 * tokenizer's end-of-text ids: chat models end a turn with their own, e.g. Llama 3's
 * `<|eot_id|>`) or `maxTokens`. The reply (its stop token left out) joins the conversation as the
 * assistant's message.
 */

/** What a chat session needs besides the model. */
export interface ChatSession {
  /** The model's tokenizer; it must carry a chat template. */
  tokenizer: Tokenizer;
  /** The model folder (for `generation_config.json`'s stop ids). */
  folder: string;
  /** A system message put first, when given. */
  system?: string;
  /** Sampling and length of each reply (`eosTokenId` is set from the folder). */
  sampling: Omit<GenerateOptions, 'eosTokenId' | 'onToken'>;
  /** Lines of user input (stdin in the CLI). */
  input: NodeJS.ReadableStream;
  /** Where replies go (stdout in the CLI). */
  write: (text: string) => void;
  /**
   * Where the base's bytes by storage type, and each turn's rendered prompt, its ids, the tokens
   * taken from the cache and the reply's ids go, when given (`--show-prompt`).
   */
  trace?: (line: string) => void;
}

/** A failure of the session's setup or of a turn, worded for the user. */
export class ChatError extends Error {}

function ids(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

/**
 * The ids that end a reply: the config's `eos_token_id`, `generation_config.json`'s (a number or
 * a list, as Llama 3 Instruct's [end_of_text, eot_id]) and the tokenizer's eos.
 *
 * @example
 * chatStopIds(model, tokenizer, 'models/SmolLM2-135M-Instruct'); // [2] (<|im_end|>)
 */
export function chatStopIds(model: AutoCausalLM, tokenizer: Tokenizer, folder: string): number[] {
  const out = new Set<number>(ids(model.config.eos_token_id));
  const gen = join(folder, 'generation_config.json');
  if (existsSync(gen)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(gen, 'utf8'));
    } catch (e) {
      throw new ChatError(`${gen} is not valid JSON (${(e as Error).message})`);
    }
    for (const id of ids((parsed as { eos_token_id?: unknown }).eos_token_id)) out.add(id);
  }
  if (tokenizer.eosTokenId !== null && tokenizer.eosTokenId !== undefined) out.add(tokenizer.eosTokenId);
  return [...out];
}

/**
 * Runs the conversation until the input ends; returns the messages it held.
 *
 * @example
 * const messages = await runChat(model, { tokenizer, folder, sampling: { maxNewTokens: 64 },
 *   input: process.stdin, write: (s) => process.stdout.write(s) });
 */
export async function runChat(model: AutoCausalLM, s: ChatSession): Promise<ChatMessage[]> {
  const tok = s.tokenizer;
  if (!(tok instanceof HFTokenizer) || tok.chatTemplate === null)
    throw new ChatError(
      'chat: the model has no chat template (tokenizer.json with chat_template.jinja or tokenizer_config.json chat_template)',
    );
  const hf: HFTokenizer = tok; // narrowed, for the loop below
  const stop = chatStopIds(model, hf, s.folder);
  const messages: ChatMessage[] = s.system ? [{ role: 'system', content: s.system }] : [];
  const lines = createInterface({ input: s.input, crlfDelay: Number.POSITIVE_INFINITY, terminal: false });
  const cache = new PromptCache();
  s.trace?.(`base ${JSON.stringify(modelFootprint(model).byType)}`); // bytes by storage type
  try {
    await turns();
  } finally {
    cache.dispose();
  }
  return messages;

  async function turns(): Promise<void> {
    for await (const line of lines) {
      if (line.trim() === '') continue;
      messages.push({ role: 'user', content: line });
      const prompt = hf.applyChatTemplate(messages, { addGenerationPrompt: true });
      const promptIds = hf.encode(prompt);
      s.trace?.(`prompt ${JSON.stringify(prompt)}`);
      s.trace?.(`ids ${JSON.stringify(promptIds)}`);
      if (promptIds.length >= model.contextLength)
        throw new ChatError(
          `chat: the conversation is ${promptIds.length} tokens, the model's context ${model.contextLength}: start a new chat`,
        );
      const r = await generate(model, promptIds, {
        ...s.sampling,
        cache,
        eosTokenId: stop,
        onToken: (id) => {
          if (!stop.includes(id)) s.write(hf.decode([id]));
        },
      });
      const reply = r.stoppedBy === 'eos' ? r.tokens.slice(0, -1) : r.tokens;
      s.trace?.(`cached ${cache.reused}`);
      s.trace?.(`reply ${JSON.stringify(reply)} ${r.stoppedBy}`);
      s.write('\n');
      messages.push({ role: 'assistant', content: hf.decode(reply) });
    }
  }
}
