/**
 * The page's form rules (src/form.ts) in Node: every number outside its range, every empty field
 * and every non-number is refused with a message naming the field; valid forms give the settings.
 */
import { describe, expect, it } from 'vitest';
import {
  checkTrainSettings,
  describeFootprint,
  formatBytes,
  formatDuration,
  type GenerateForm,
  readNumber,
  readQuant,
  STEPS,
  type TrainForm,
  validateGenerate,
  validateTrain,
} from '../src/form.js';

const TRAIN: TrainForm = {
  name: 'e2e',
  rank: '8',
  steps: { value: '60' },
  batch: { value: '8' },
  block: { value: '128' },
  lr: { value: '0.01' },
  targets: ['c_attn', 'c_proj'],
};
const CTX = {
  nPositions: 128,
  taken: (n: string) => (n === 'old' ? 'is saved in this browser' : null),
  reserved: 'base',
};
const fields = (form: Partial<TrainForm>) =>
  validateTrain({ ...TRAIN, ...form }, CTX).errors.map((e) => e.field);

describe('train form', () => {
  it('gives the settings of a valid form', () => {
    expect(validateTrain(TRAIN, CTX)).toEqual({
      errors: [],
      settings: {
        name: 'e2e',
        steps: 60,
        batchSize: 8,
        blockSize: 128,
        lr: 0.01,
        r: 8,
        targets: ['c_attn', 'c_proj'],
      },
    });
  });

  it('refuses an empty steps field, and says it is empty', () => {
    const { settings, errors } = validateTrain({ ...TRAIN, steps: { value: '' } }, CTX);
    expect(settings).toBeUndefined();
    expect(errors).toEqual([
      { field: 'steps', message: 'steps is empty: enter a whole number from 1 to 5000' },
    ]);
  });

  it('refuses a learning rate of 50 (and 0, and a negative one), naming the range', () => {
    const { errors } = validateTrain({ ...TRAIN, lr: { value: '50' } }, CTX);
    expect(errors.map((e) => e.field)).toEqual(['lr']);
    expect(errors[0].message).toMatch(
      /^learning rate must be a number greater than 0 and at most 0\.1 .*; got 50$/,
    );
    expect(fields({ lr: { value: '0' } })).toEqual(['lr']);
    expect(fields({ lr: { value: '-0.01' } })).toEqual(['lr']);
    expect(fields({ lr: { value: '0.1' } })).toEqual([]);
    expect(fields({ lr: { value: '1e-4' } })).toEqual([]);
  });

  it('refuses fractions, out-of-range numbers and text the browser could not parse', () => {
    expect(fields({ steps: { value: '2.5' } })).toEqual(['steps']);
    expect(fields({ steps: { value: '0' } })).toEqual(['steps']);
    expect(fields({ steps: { value: '5001' } })).toEqual(['steps']);
    expect(fields({ steps: { value: '', badInput: true } })).toEqual(['steps']);
    expect(fields({ batch: { value: '65' } })).toEqual(['batch']);
    expect(fields({ block: { value: '129' } })).toEqual(['block']);
    expect(fields({ block: { value: '7' } })).toEqual(['block']);
    expect(fields({ rank: '3' })).toEqual(['rank']);
    expect(fields({ steps: { value: '1' }, batch: { value: '64' }, block: { value: '8' } })).toEqual([]);
  });

  it('reports every bad field at once, in the form order', () => {
    expect(fields({ name: '', steps: { value: '' }, lr: { value: '50' }, targets: [] })).toEqual([
      'name',
      'steps',
      'lr',
      'targets',
    ]);
  });

  it('asks for at least one module, and for a name that is free and well formed', () => {
    const { errors } = validateTrain({ ...TRAIN, targets: [] }, CTX);
    expect(errors).toEqual([{ field: 'targets', message: 'choose at least one module to adapt' }]);
    expect(fields({ name: 'base' })).toEqual(['name']);
    expect(fields({ name: 'a.b' })).toEqual(['name']);
    const taken = validateTrain({ ...TRAIN, name: 'old' }, CTX).errors[0];
    expect(taken).toEqual({
      field: 'name',
      message: "an adapter named 'old' is saved in this browser; choose another name or delete it",
    });
  });

  it('asks for pasted text longer than the block', () => {
    expect(fields({ textLength: 128 })).toEqual(['text']);
    expect(fields({ textLength: 129 })).toEqual([]);
    expect(fields({ textLength: 40, block: { value: '32' } })).toEqual([]);
  });

  it('checkTrainSettings throws the first problem of settings made in code', () => {
    const ok = validateTrain(TRAIN, CTX).settings!;
    expect(() => checkTrainSettings(ok, 128)).not.toThrow();
    expect(() => checkTrainSettings({ ...ok, steps: Number.NaN }, 128)).toThrow(/^steps /);
    expect(() => checkTrainSettings({ ...ok, lr: 50 }, 128)).toThrow(/^learning rate /);
    expect(() => checkTrainSettings({ ...ok, blockSize: 256 }, 128)).toThrow(/^block .*context is 128/);
  });
});

describe('generate form', () => {
  const GEN: GenerateForm = {
    prompt: 'line one\nline two',
    maxTokens: { value: '80' },
    temperature: { value: '0.8' },
    topK: { value: '20' },
    topP: { value: '0.9' },
    seed: { value: '3' },
  };
  const gen = (form: Partial<GenerateForm>) =>
    validateGenerate({ ...GEN, ...form }, 65).errors.map((e) => e.field);

  it('gives the sampling settings of a valid form (a multi-line prompt kept as it is)', () => {
    expect(validateGenerate(GEN, 65)).toEqual({
      errors: [],
      settings: {
        prompt: 'line one\nline two',
        maxNewTokens: 80,
        temperature: 0.8,
        topK: 20,
        topP: 0.9,
        seed: 3,
      },
    });
  });

  it('no repeated 4-gram: greedy prompt + reply must fit the context; sampling is not held to it', () => {
    const greedy = { temperature: { value: '0' } };
    // 30 prompt tokens + 80 = 110 ≤ 128: fits, and the settings carry n = 4
    expect(
      validateGenerate({ ...GEN, ...greedy, noRepeat: { promptTokens: 30, contextLength: 128 } }, 65).settings
        ?.noRepeatNgram,
    ).toBe(4);
    // 49 + 80 = 129 > 128: refused at the tokens field, with the most that fits (79)
    expect(
      validateGenerate({ ...GEN, ...greedy, noRepeat: { promptTokens: 49, contextLength: 128 } }, 65).errors,
    ).toEqual([
      {
        field: 'max-tokens',
        message:
          "with no repeated 4-gram the prompt (49 tokens) and the reply must fit the model's context of 128: at most 79 tokens, or untick it",
      },
    ]);
    expect(
      validateGenerate({ ...GEN, ...greedy, noRepeat: { promptTokens: 128, contextLength: 128 } }, 65)
        .errors[0].message,
    ).toMatch(/: shorten the prompt, or untick it$/);
    // sampled (temperature 0.8): generate's sliding window applies, so nothing is refused
    expect(
      validateGenerate({ ...GEN, noRepeat: { promptTokens: 49, contextLength: 128 } }, 65).errors,
    ).toEqual([]);
    // unticked: no field
    expect(validateGenerate({ ...GEN, ...greedy }, 65).settings).not.toHaveProperty('noRepeatNgram');
  });

  it('refuses sampling values outside their ranges, each at its own field', () => {
    expect(gen({ topP: { value: '1.5' } })).toEqual(['top-p']);
    expect(gen({ topP: { value: '0' } })).toEqual(['top-p']);
    expect(gen({ topK: { value: '66' } })).toEqual(['top-k']);
    expect(gen({ topK: { value: '2.5' } })).toEqual(['top-k']);
    expect(gen({ temperature: { value: '-1' } })).toEqual(['temperature']);
    expect(gen({ temperature: { value: '' } })).toEqual(['temperature']);
    expect(gen({ maxTokens: { value: '401' } })).toEqual(['max-tokens']);
    expect(gen({ seed: { value: '-1' } })).toEqual(['seed']);
    expect(gen({ prompt: '' })).toEqual(['prompt']);
    expect(gen({ temperature: { value: '0' }, topK: { value: '0' }, topP: { value: '1' } })).toEqual([]);
  });
});

describe('readouts', () => {
  it('reads numbers with the range in the message', () => {
    expect(readNumber({ value: ' 12 ' }, STEPS)).toEqual({ value: 12 });
    expect(readNumber({ value: 'Infinity' }, STEPS)).toEqual({
      error: "steps 'Infinity' is not a number: enter a whole number from 1 to 5000",
    });
  });

  it('formats bytes and durations', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(3.5 * 1024 * 1024)).toBe('3.50 MiB');
    expect(formatBytes(200 * 1024 * 1024)).toBe('200.0 MiB');
    expect(formatDuration(4.4)).toBe('4 s');
    expect(formatDuration(75)).toBe('1 min 15 s');
    expect(formatDuration(3700)).toBe('1 h 1 min');
  });
});

describe('quantize base', () => {
  it('takes none, nf4 and int8; refuses anything else, and any change while a run holds the model', () => {
    for (const q of ['none', 'nf4', 'int8']) expect(readQuant(q, { busy: false })).toEqual({ value: q });
    expect(readQuant('fp4', { busy: false })).toEqual({
      error: "quantize base must be one of none, nf4, int8; got 'fp4'",
    });
    expect(readQuant('NF4', { busy: false })).toHaveProperty('error');
    expect(readQuant('nf4', { busy: true })).toEqual({
      error: 'the base cannot change while a run uses it: wait for it to finish',
    });
  });

  it("shows the base's bytes by storage type beside float32, and the quantized layers' ratio", () => {
    // the demo's GPT-2 in NF4 (modelFootprint's numbers, blocks of 64: 4.5 bits a weight)
    const nf4 = {
      byType: { nf4: 110592, float32: 66560, bool: 16384 },
      bytes: 193536,
      f32Bytes: 869376,
      quantized: { bytes: 110592, f32Bytes: 786432 },
    };
    expect(describeFootprint(nf4)).toBe(
      'base 189.0 KiB (float32: 849.0 KiB) · quantized layers 108.0 KiB, 0.141× of their float32 768.0 KiB · nf4 108.0 KiB + float32 65.0 KiB + bool 16.0 KiB',
    );
    const f32 = {
      byType: { float32: 852992, bool: 16384, int8: 0 },
      bytes: 869376,
      f32Bytes: 869376,
      quantized: { bytes: 0, f32Bytes: 0 },
    };
    expect(describeFootprint(f32)).toBe(
      'base 849.0 KiB (float32: 849.0 KiB) · no quantized layers · float32 833.0 KiB + bool 16.0 KiB',
    );
  });
});
