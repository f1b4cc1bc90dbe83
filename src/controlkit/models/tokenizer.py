"""A CLIP tokenizer that needs no download: byte-level vocabulary, optional merges."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> list[str]:
    # GPT-2's reversible byte -> printable character table, which CLIP's BPE works on.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_byte_level_tokenizer(
    path: str | Path, words: Iterable[str] = (), max_length: int = 77
) -> CLIPTokenizer:
    """Write vocab.json and merges.txt so every text tokenizes; ``words`` get whole-word tokens."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab_list = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in sorted({w.lower() for w in words if len(w) > 1}):
        if not all(c in chars for c in word):
            continue
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            merged = symbols[0] + symbols[1]
            merge = f"{symbols[0]} {symbols[1]}"
            if merge not in merges:
                merges.append(merge)
                vocab_list.append(merged)
            symbols = [merged] + symbols[2:]
    vocab_list += [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + ("\n" if merges else ""))
    tokenizer = CLIPTokenizer(
        str(path / "vocab.json"), str(path / "merges.txt"), model_max_length=max_length, pad_token=EOS
    )
    tokenizer.save_pretrained(path)
    return tokenizer
