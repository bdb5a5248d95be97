"""Trains the byte-level BPE tokenizer of the shipped Llama model (examples/checkpoints/llama-shakespeare-brown)
with the Hugging Face `tokenizers` library, on Tiny Shakespeare plus E2E's validation split
(data/tinyshakespeare/input.txt, data/e2e/valid.txt): the E2E lines are in the tokenizer's training
text so that the fine-tune's words (eatType, riverside, family-friendly, £20-25) are few tokens
each, but never in the model's pre-training (examples/pretrain-llama.ts).

Writes OUT/tokenizer.json, OUT/tokenizer_config.json and OUT/tokenizer_cases.json (the ids the
library gives for a few strings, copied to examples/test/fixtures/llama-shakespeare-brown-tokenizer-cases.json for examples/test/shipped-llama.test.ts).

Run (where `tokenizers` and `transformers` are installed, e.g. the GPU machine):
  python3 examples/pretrain-llama/train_tokenizer.py --out out/llama-tokenizer [--vocab 4096]
"""
import argparse, json, os
import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--vocab", type=int, default=4096)
args = ap.parse_args()
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
read = lambda p: open(os.path.join(root, "data", p), encoding="utf-8").read()
shakespeare = read("tinyshakespeare/input.txt")
e2e_valid = read("e2e/valid.txt")

EOT = "<|endoftext|>"
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(
    vocab_size=args.vocab,
    special_tokens=[EOT],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    min_frequency=2,
)
# one training text a paragraph (Shakespeare) or a line (E2E)
texts = [p for p in shakespeare.split("\n\n") if p] + [l for l in e2e_valid.split("\n") if l]
tok.train_from_iterator(texts, trainer)
os.makedirs(args.out, exist_ok=True)
tok.save(os.path.join(args.out, "tokenizer.json"))
config = {
    "bos_token": EOT,
    "eos_token": EOT,
    "model_max_length": 256,
    "tokenizer_class": "PreTrainedTokenizerFast",
    "clean_up_tokenization_spaces": False,
}
json.dump(config, open(os.path.join(args.out, "tokenizer_config.json"), "w"), indent=2)

strings = [
    "ROMEO:\nBut, soft! what light through yonder window breaks?",
    "name : The Eagle | eatType : coffee shop | food : Japanese | priceRange : less than £20 | customer rating : low | area : riverside | familyFriendly : yes | near : Burger King||",
    "The Eagle is a low rated coffee shop near Burger King and the riverside that is family friendly and is less than £20 for Japanese food . \n",
    "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced \"no evidence\".",
    "  two  spaces,\ttabs\t and\n\nnewlines \n",
    "café naïve — 日本語 🍣 1234567",
    "text with <|endoftext|> inside",
    "",
]
cases = []
for s in strings:
    ids = tok.encode(s, add_special_tokens=False).ids
    cases.append({"text": s, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
json.dump(
    {"tokenizers": tokenizers.__version__, "vocab_size": tok.get_vocab_size(), "cases": cases},
    open(os.path.join(args.out, "tokenizer_cases.json"), "w"),
    ensure_ascii=False,
    indent=1,
)
print(f"tokenizer: vocab {tok.get_vocab_size()}, {len(texts)} training texts, tokenizers {tokenizers.__version__}")
for c in cases[:3]:
    print(len(c["ids"]), "tokens:", c["ids"][:24])
